"""The pytorch-grad-cam drop-in: ``fcinterp_fast.cam.GradCAMPlusPlus`` against pytorch-grad-cam's own.

The job (issue 13's benchmark): a batch of 8 images, one ``ClassifierOutputTarget`` each (8
different classes), ``GradCAMPlusPlus(model, target_layers=[layer])(input_tensor, targets)``:

* the bundled EfficientNet-Lite0 (ImageNet weights), layer ``bn2``;
* torchvision's ResNet-50 with random weights (``weights=None``, seed 0: the time does not depend on
  the weights, and nothing is downloaded), layer ``layer4``.

Both layers feed global average pooling, so ours computes the gradient in closed form (no
backward); pytorch-grad-cam runs a forward and a backward of the batch and combines in numpy. The
images are seeded N(0, 1) noise, 224 x 224. Each contender: constructed once, one untimed call,
then the median of ``--repeats`` calls (``fcinterp_fast.bench.time_call``); the ratio is of the
two medians of one run. The maps must agree within 1e-5 (exit code 1 otherwise). Prints a markdown
table and writes it with one record per model and contender through
``bench.write_results("cam_dropin", ...)`` under ``--out``.

    python benchmarks/bench_cam_dropin.py [--device cpu] [--repeats 5] [--quick]

``--quick`` (what the test runs): torchvision ResNet-18 (random weights), 2 images of 64 x 64, one
timed call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import fcinterp_fast
from fcinterp_fast import bench
from fcinterp_fast.cam import GradCAMPlusPlus

TOLERANCE = 1e-5
SEED = 0


def _lite0(device: torch.device) -> tuple[nn.Module, nn.Module]:
    model = fcinterp_fast.models.load("efficientnet_lite0", device=device)
    return model, model.bn2


def _resnet(depth: int):
    def build(device: torch.device) -> tuple[nn.Module, nn.Module]:
        import torchvision

        torch.manual_seed(SEED)
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval().to(device)
        return model, model.layer4

    return build


# name: (builder, how the weights were made)
MODELS = {
    "efficientnet_lite0": (_lite0, "bundled ImageNet weights"),
    "resnet50": (_resnet(50), "torchvision, random init (weights=None)"),
}
QUICK_MODELS = {"resnet18": (_resnet(18), "torchvision, random init (weights=None)")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each contender (median reported)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="ResNet-18, 2 images of 64 x 64, one timed call")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)

    from pytorch_grad_cam import GradCAMPlusPlus as TheirGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = torch.device(args.device)
    models, batch, side, repeats = (QUICK_MODELS, 2, 64, 1) if args.quick else (MODELS, args.batch, 224, args.repeats)
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(SEED)).to(device)
    targets = [ClassifierOutputTarget(100 * b + 7) for b in range(batch)]
    records, rows, agree = [], [], True
    for name, (build, weights) in models.items():
        model, layer = build(device)
        with GradCAMPlusPlus(model, [layer]) as ours, TheirGradCAMPlusPlus(model, [layer]) as theirs:
            timings, maps = {}, {}
            for method, cam in (
                ("fcinterp_fast.cam.GradCAMPlusPlus", ours),
                ("pytorch_grad_cam.GradCAMPlusPlus", theirs),
            ):
                timings[method], maps[method] = _timed(cam, x, targets, device, repeats)
        ours_maps, theirs_maps = maps.values()
        diff = float(abs(ours_maps - theirs_maps).max())
        agree &= diff <= TOLERANCE
        ours_s, theirs_s = (t.median for t in timings.values())
        speedup = theirs_s / ours_s
        for method, timing in timings.items():
            records.append(
                {
                    "model": name,
                    "weights": weights,
                    "method": method,
                    "seconds": timing.median,
                    "times_s": timing.times_s,
                    "peak_mib": timing.peak_mib,
                    "speedup": speedup if method.startswith("fcinterp") else 1.0,
                    "max_abs_diff": diff,
                }
            )
        rows.append(f"| {name} ({weights}) | {ours_s:.3f} | {theirs_s:.3f} | {speedup:.1f}x | {diff:.1e} |")
        del model, layer
    config = {
        "batch": batch,
        "input": [batch, 3, side, side],
        "targets": [t.category for t in targets],
        "layers": {"efficientnet_lite0": "bn2", "resnet50": "layer4", "resnet18": "layer4"},
        "repeats": repeats,
        "quick": args.quick,
        "device": str(device),
        "tolerance": TOLERANCE,
    }
    table = "\n".join(
        [
            f"GradCAMPlusPlus, {batch} images {side}x{side}, one ClassifierOutputTarget each, "
            f"{bench.device_name(device)} (median of {repeats})",
            "",
            "| model | ours s | pytorch-grad-cam s | speed-up | max abs diff |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print("\n" + table)
    path = bench.write_results("cam_dropin", records, out=args.out, config=config, device=device, markdown=table)
    print(f"\nwrote {path}")
    if not agree:
        print(f"maps differ by more than {TOLERANCE:g}", file=sys.stderr)
    return 0 if agree else 1


def _timed(cam, x: torch.Tensor, targets: list, device: torch.device, repeats: int):
    """The timing of ``cam(x, targets)`` (one untimed call first) and the maps of its last call."""
    last = {}

    def call() -> None:
        last["maps"] = cam(x, targets)

    timing = bench.time_call(call, device, repeat=repeats)
    return timing, last["maps"]


if __name__ == "__main__":
    sys.exit(main())
