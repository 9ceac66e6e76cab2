"""Fused Smooth Grad-CAM++ of many nodes against pytorch-grad-cam looped over targets and samples.

The job (the issue's benchmark): EfficientNet-Lite0 with its bundled ImageNet weights, matplotlib's
``grace_hopper.jpg``, class "military uniform", the 14 nodes of a full split tree of depth 3, 16
noisy copies (noise 0.15, smooth="maps", omega = |W|).

* ours: ``fcinterp_fast.explain`` with the 14 targets in one call (one forward of the 16 copies; the
  last feature map feeds only global average pooling, so no backward at all); the median of
  ``--repeats`` runs.
* pytorch-grad-cam: for each target a copy of the model whose head row is |W_k| * mask (bias 0,
  ``fcinterp_fast.baselines.masked_head_copy``), ``GradCAMPlusPlus`` on it, and one forward +
  backward per noisy copy, averaging the relu'd maps (``baselines.gradcam_smooth_maps``); one run,
  the time of copying the model not counted.

Both are timed by ``fcinterp_fast.bench.time_call`` after one forward of the model that warms up
both; both see the same noise (``fcinterp_fast.cam.noisy_copies`` with the same seed); the maps must
agree within 1e-5 (the exit code is 1 otherwise). Prints a markdown table and writes it with one
record per method through ``bench.write_results("explain", ...)`` under ``--out``.

    python benchmarks/bench_explain.py [--device cpu] [--n-samples 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch

import fcinterp_fast
from fcinterp_fast import baselines, bench
from fcinterp_fast.cam import explain, noisy_copies
from fcinterp_fast.cam.base import prepare_images

MODEL = "efficientnet_lite0"
HEAD, LAYER = "classifier", "bn2"  # its head and the layer explained (the last feature map)
IMAGE = "grace_hopper.jpg"
CLASS = "military uniform"
NOISE = 0.15
SEED = 0
TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median reported)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()

    from matplotlib import cbook

    device = torch.device(args.device)
    model = fcinterp_fast.models.load(MODEL, device=device)
    x = prepare_images(cbook.get_sample_data(IMAGE, asfileobj=False), model, device, torch.float32)
    fit = fcinterp_fast.fit(model, tree="full", depth=3)
    k = fit.class_index(CLASS)
    targets = [(k, node) for node in fit.nodes]
    n = args.n_samples
    last: dict[str, torch.Tensor] = {}  # what the timed calls returned

    def ours() -> None:
        generator = torch.Generator(device=device).manual_seed(SEED)
        last["ours"] = explain(model, x, targets, n_samples=n, noise=NOISE, fit=fit, generator=generator)

    with torch.no_grad():
        model(x)  # warm up the backend for both contenders
    ours_timing = bench.time_call(ours, device, repeat=args.repeats, warmup=0)
    maps = last["ours"].cpu().numpy()

    copies = noisy_copies(x, n, NOISE, torch.Generator(device=device).manual_seed(SEED))
    head = cast(torch.nn.Linear, model.get_submodule(HEAD))
    W = head.weight.detach()
    reference_s, max_diff = 0.0, 0.0
    reference_peaks: list[float | None] = []
    for t, (_, node) in enumerate(targets):
        row = torch.zeros_like(W[k])
        members = fit.members(k, node).to(device)
        row[members] = W[k, members].abs()
        clone = baselines.masked_head_copy(model, head, k, row)
        timing = bench.time_call(_looped(clone, copies, n, k, last), device, repeat=1, warmup=0)
        reference_s += timing.best
        reference_peaks.append(timing.peak_mib)
        max_diff = max(max_diff, float(abs(maps[:, t] - last["looped"].numpy()).max()))
        del clone

    speedup = reference_s / ours_timing.median
    agree = max_diff <= TOLERANCE
    records = [
        {
            "method": "fcinterp_fast.explain (fused)",
            "seconds": ours_timing.median,
            "times_s": ours_timing.times_s,
            "peak_mib": ours_timing.peak_mib,
            "speedup": speedup,
            "max_abs_diff": max_diff,
            "maps_agree": agree,
        },
        {
            "method": "pytorch-grad-cam looped",
            "seconds": reference_s,
            "calls": len(targets) * n,
            "peak_mib": max((p for p in reference_peaks if p is not None), default=None),
            "speedup": 1.0,
        },
    ]
    config = {
        "model": MODEL,
        "image": IMAGE,
        "class": CLASS,
        "class_index": k,
        "targets": len(targets),
        "nodes": fit.nodes,
        "n_samples": n,
        "noise": NOISE,
        "smooth": "maps",
        "weights": "abs",
        "input": list(x.shape),
        "repeats": args.repeats,
        "device": str(device),
        "tolerance": TOLERANCE,
    }
    table = "\n".join(
        [
            f"{len(targets)} targets x {n} noisy copies, EfficientNet-Lite0 224x224, {bench.device_name(device)}",
            "",
            "| method | seconds | speed-up | max abs diff |",
            "|---|---:|---:|---:|",
            f"| fcinterp_fast.explain (fused, median of {len(ours_timing.times_s)}) | {ours_timing.median:.3f} "
            f"| {speedup:.1f}x | {max_diff:.2e} |",
            f"| pytorch-grad-cam, {len(targets) * n} forward+backward | {reference_s:.3f} | 1.0x | - |",
        ]
    )
    print("\n" + table)
    path = bench.write_results("explain", records, out=args.out, config=config, device=device, markdown=table)
    print(f"\nwrote {path}")
    if not agree:
        print(f"maps differ by {max_diff:.2e} > {TOLERANCE:g}", file=sys.stderr)
    return 0 if agree else 1


def _looped(clone: torch.nn.Module, copies: torch.Tensor, n: int, k: int, last: dict) -> Callable[[], None]:
    """pytorch-grad-cam's maps of class k of ``clone`` (its head masked for one node), into ``last["looped"]``."""

    def run() -> None:
        maps = baselines.gradcam_smooth_maps(clone, clone.get_submodule(LAYER), copies, n, k)
        last["looped"] = torch.from_numpy(maps)

    return run


if __name__ == "__main__":
    sys.exit(main())
