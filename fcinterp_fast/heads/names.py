"""Which tensor or module of a checkpoint is the classifier head, by whole names.

A name is split into its dotted components and the parameter name (``"weight"``) is dropped, as are
trailing indices of a ``Sequential`` (``classifier.6.weight`` is module ``classifier``). It names
a head when its last component is exactly one of ``HEAD_MODULE_NAMES``: ``fc`` names
``model.fc.weight``, never ``transformer.h.0.mlp.c_fc.weight`` or ``blocks.0.mlp.fc1.weight``.
A model whose output layer is its input embedding (a tied head: GPT-2, most small language models)
stores no head of its own; ``INPUT_EMBEDDING_NAMES`` name the embedding it reuses.
"""

from __future__ import annotations

__all__ = [
    "HEAD_MODULE_NAMES",
    "HEAD_TENSOR_NAMES",
    "INPUT_EMBEDDING_NAMES",
    "module_path",
    "is_head_name",
    "is_embedding_name",
    "head_candidates",
]

#: Names classifiers give their head module (torchvision, timm, Hugging Face).
HEAD_MODULE_NAMES = ("lm_head", "fc", "classifier", "head", "heads", "last_linear", "cls_head", "score")
#: In checkpoints, also the output layer of Meta's Llama format (``output.weight``).
HEAD_TENSOR_NAMES = (*HEAD_MODULE_NAMES, "output")
#: The input embeddings a tied head reuses (GPT-2, Llama / Mistral / Qwen, BERT, Meta's format).
INPUT_EMBEDDING_NAMES = ("wte", "embed_tokens", "word_embeddings", "tok_embeddings")


def module_path(name: str) -> tuple[str, ...]:
    """The components of a tensor's module without the parameter name and trailing indices:
    ``"classifier.6.weight"`` -> ``("classifier",)``; a module name is passed without a parameter."""
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] in ("weight", "bias"):
        parts = parts[:-1]
    while parts and parts[-1].isdigit():
        parts.pop()
    return tuple(parts)


def is_head_name(name: str, names: tuple[str, ...] = HEAD_TENSOR_NAMES) -> bool:
    path = module_path(name)
    return bool(path) and path[-1] in names


def is_embedding_name(name: str) -> bool:
    path = module_path(name)
    return bool(path) and path[-1] in INPUT_EMBEDDING_NAMES


def _index_key(name: str) -> tuple[int, ...]:
    """The trailing indices of a name (``classifier.6.weight`` -> (6,)), to order a Sequential."""
    parts = name.split(".")
    if parts and parts[-1] in ("weight", "bias"):
        parts = parts[:-1]
    indices: list[int] = []
    while parts and parts[-1].isdigit():
        indices.insert(0, int(parts.pop()))
    return tuple(indices)


def head_candidates(names: list[str], head_names: tuple[str, ...] = HEAD_TENSOR_NAMES) -> list[str]:
    """The head of each head-named module among ``names`` (tensor or module names of 2-D weights):
    a ``Sequential`` head (``classifier.0``, ``classifier.3``, ``classifier.6``) gives its last layer."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        if is_head_name(name, head_names):
            groups.setdefault(module_path(name), []).append(name)
    return [max(group, key=_index_key) for group in groups.values()]
