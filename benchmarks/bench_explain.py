"""Fused Smooth Grad-CAM++ of many nodes against pytorch-grad-cam looped over targets and samples.

The job (the issue's benchmark): EfficientNet-Lite0 with its bundled ImageNet weights, matplotlib's
``grace_hopper.jpg``, class "military uniform", the 14 nodes of a full split tree of depth 3, 16
noisy copies (noise 0.15, smooth="maps", omega = |W|).

* ours: ``fcinterp_fast.explain`` with the 14 targets in one call (one forward of the 16 copies; the
  last feature map feeds only global average pooling, so no backward at all).
* pytorch-grad-cam: for each target a copy of the model whose head row is |W_k| * mask (bias 0),
  ``GradCAMPlusPlus`` on it, and one forward + backward per noisy copy, averaging the relu'd maps
  (``tests/cam_oracle.smooth_maps``); the time of copying the model is not counted.

Both see the same noise (``fcinterp_fast.cam.noisy_copies`` with the same seed); the maps must agree
within 1e-5. Prints a markdown table and writes JSON under ``benchmarks/results/``.

    python benchmarks/bench_explain.py [--device cpu] [--n-samples 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fcinterp_fast  # noqa: E402
from fcinterp_fast.bench import device_name, git_state, sync  # noqa: E402
from fcinterp_fast.cam import explain, noisy_copies  # noqa: E402
from fcinterp_fast.cam.base import prepare_images  # noqa: E402

CLASS = "military uniform"
NOISE = 0.15
SEED = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median reported)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from matplotlib import cbook

    import cam_oracle

    device = torch.device(args.device)
    model = fcinterp_fast.models.load("efficientnet_lite0", device=device)
    image = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    x = prepare_images(image, model, device, torch.float32)
    fit = fcinterp_fast.fit(model, tree="full", depth=3)
    k = fit.class_index(CLASS)
    targets = [(k, node) for node in fit.nodes]
    n = args.n_samples

    def ours():
        generator = torch.Generator(device=device).manual_seed(SEED)
        return explain(model, x, targets, n_samples=n, noise=NOISE, fit=fit, generator=generator)

    with torch.no_grad():
        model(x)  # warm up the backend for both contenders
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        maps = ours()
        sync(device)
        times.append(time.perf_counter() - start)
    ours_time = statistics.median(times)

    copies = noisy_copies(x, n, NOISE, torch.Generator(device=device).manual_seed(SEED))
    W = model.classifier.weight.detach()
    reference_time, max_diff = 0.0, 0.0
    for t, (_, node) in enumerate(targets):
        row = torch.zeros_like(W[k])
        members = fit.members(k, node).to(device)
        row[members] = W[k, members].abs()
        clone = cam_oracle.masked_head_copy(model, model.classifier, k, row)
        sync(device)
        start = time.perf_counter()
        reference = cam_oracle.smooth_maps(clone, clone.bn2, copies, n, k)
        sync(device)
        reference_time += time.perf_counter() - start
        max_diff = max(max_diff, float(abs(maps[:, t].cpu().numpy() - reference).max()))
        del clone

    record = {
        "benchmark": "explain",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "versions": _versions(),
        "git_sha": _git_sha(),
        "config": {
            "model": "efficientnet_lite0",
            "image": "grace_hopper.jpg",
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
        },
        "results": [
            {"method": "fcinterp_fast.explain (fused)", "seconds": ours_time, "runs": times},
            {"method": "pytorch-grad-cam looped", "seconds": reference_time, "calls": len(targets) * n},
        ],
        "speedup": reference_time / ours_time,
        "max_abs_diff": max_diff,
        "maps_equal_1e-5": max_diff <= 1e-5,
    }
    print(f"\n{len(targets)} targets x {n} noisy copies, EfficientNet-Lite0 224x224, {record['device']}\n")
    print("| method | seconds | speed-up | max abs diff |")
    print("|---|---:|---:|---:|")
    print(
        f"| fcinterp_fast.explain (fused, median of {args.repeats}) | {ours_time:.3f} | {record['speedup']:.1f}x | {max_diff:.2e} |"
    )
    print(f"| pytorch-grad-cam, {len(targets) * n} forward+backward | {reference_time:.3f} | 1.0x | - |")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = record["timestamp"].replace(":", "").replace("+0000", "Z")
    path = out / f"explain-{device.type}-{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0 if record["maps_equal_1e-5"] else 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "fcinterp_fast": fcinterp_fast.__version__}
    for package in ("torch", "timm", "triton", "grad-cam", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _git_sha() -> str | None:
    git = git_state()
    return git["sha"] if git else None


if __name__ == "__main__":
    sys.exit(main())
