"""Tiny real models the tests build (random weights, fixed seed), shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def tiny_vit_folder(folder: Path, labels: list[str], image_size: int = 16, patch_size: int = 8):
    """A Hugging Face ViT classifier of ``len(labels)`` classes with those labels (``id2label``),
    saved with ``save_pretrained`` into ``folder``; returns the model (eval mode). Skips the test
    without ``transformers``."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=image_size,
        patch_size=patch_size,
        id2label=dict(enumerate(labels)),
        label2id={name: k for k, name in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(folder)
    return model
