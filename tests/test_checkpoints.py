"""The heads users bring as files: Hugging Face checkpoint folders, sharded checkpoints (safetensors
and ``pytorch_model.bin`` indexes), tied heads, ``.npy`` arrays; head selection by whole module
names that is never silently wrong. Checkpoints are real ones, written by ``transformers`` from
tiny models (hidden size 32, vocabulary 500)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fcinterp_fast
from checks import assert_same_fit
from fcinterp_fast import head_weight
from fcinterp_fast.api import plan_fit
from fcinterp_fast.heads import files
from fcinterp_fast.heads.files import FileSource

transformers = pytest.importorskip("transformers")
VOCAB, HIDDEN = 500, 32
OPTIONS = dict(backend="torch", min_size=4)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    transformers.logging.set_verbosity_error()


def _gpt2(tie: bool, layers: int = 2) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=layers, n_embd=HIDDEN, n_head=2, vocab_size=VOCAB, n_positions=16, tie_word_embeddings=tie,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _llama(tie: bool = False) -> nn.Module:
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=VOCAB, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def _bert(head: bool) -> nn.Module:
    torch.manual_seed(2)
    config = transformers.BertConfig(
        num_hidden_layers=1, hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB,
        num_labels=7,
    )  # fmt: skip
    return (transformers.BertForSequenceClassification if head else transformers.BertModel)(config)


def _saved(model: nn.Module, folder: Path, **options) -> Path:
    model.save_pretrained(folder, **options)
    return folder


def _fit(source, **options):
    return fcinterp_fast.fit(source, device="cpu", **OPTIONS, **options)


# ------------------------------------------------------------------------------ tied heads
def test_gpt2_tied_folder_fits_the_input_embedding_and_says_so(tmp_path):
    model = _gpt2(tie=True)
    folder = _saved(model, tmp_path / "gpt2")
    assert "lm_head.weight" not in json.dumps(sorted(files._safetensors_header(folder / "model.safetensors")[0]))
    with pytest.warns(
        fcinterp_fast.FitWarning, match=r"stores no output layer: fitting the input embedding 'transformer.wte.weight'"
    ):
        fit = _fit(folder)
    assert "tied output head" in str(fit.source) and "config.json: tie_word_embeddings is true" in str(fit.source)
    assert_same_fit(fit, fcinterp_fast.fit(model.lm_head.weight, **OPTIONS))  # lm_head is wte, tied
    with pytest.warns(fcinterp_fast.FitWarning, match="tied head"):
        assert torch.equal(head_weight(folder / "model.safetensors"), model.transformer.wte.weight.detach())


def test_gpt2_tied_file_without_config_never_fits_an_mlp_weight(tmp_path):
    """The old suffix rule took ``transformer.h.0.mlp.c_fc.weight`` for an ``fc`` head (one layer)
    and listed only the ``c_fc`` weights as candidates (two layers)."""
    model = _gpt2(tie=True, layers=2)
    folder = _saved(model, tmp_path / "gpt2")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(folder / "model.safetensors", alone / "gpt2.safetensors")  # no config.json beside it
    with pytest.warns(fcinterp_fast.FitWarning, match="no output layer is stored and there is no config.json"):
        fit = _fit(alone / "gpt2.safetensors")
    assert fit.source.name == "transformer.wte.weight"
    # name= always wins
    chosen = _fit(alone / "gpt2.safetensors", name="transformer.h.0.mlp.c_fc.weight")
    assert_same_fit(chosen, fcinterp_fast.fit(model.transformer.h[0].mlp.c_fc.weight, **OPTIONS))


def test_gpt2_untied_folder_fits_lm_head_without_a_warning(tmp_path):
    model = _gpt2(tie=False)
    folder = _saved(model, tmp_path / "gpt2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = _fit(folder)
    assert str(fit.source) == f"tensor lm_head.weight in {folder / 'model.safetensors'}"
    assert_same_fit(fit, fcinterp_fast.fit(model.lm_head.weight, **OPTIONS))


def test_config_saying_untied_without_an_output_layer_raises(tmp_path):
    folder = _saved(_gpt2(tie=True), tmp_path / "gpt2")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"tie_word_embeddings": False}))
    with pytest.raises(ValueError, match=r"no classifier head .*tie_word_embeddings to false.*transformer.wte.weight"):
        _fit(folder)


# ---------------------------------------------------------------------------- sharded
def test_sharded_llama_opens_only_the_head_shard_and_equals_the_in_memory_fit(tmp_path, monkeypatch):
    model = _llama()
    folder = _saved(model, tmp_path / "llama", max_shard_size="20KB")
    index = folder / "model.safetensors.index.json"
    shards = {p.name for p in folder.glob("*.safetensors")}
    assert len(shards) > 2
    opened = []
    header = files._safetensors_header
    monkeypatch.setattr(files, "_safetensors_header", lambda path: opened.append(path.name) or header(path))
    expected = fcinterp_fast.fit(model.lm_head.weight, **OPTIONS)
    for given in (folder, index, str(index)):
        opened.clear()
        plan = plan_fit(given, device="cpu", max_memory=40 * HIDDEN * 400, **OPTIONS)
        assert isinstance(plan.source, FileSource) and plan.block_rows < VOCAB  # streamed in blocks
        head_shard = json.loads(index.read_text())["weight_map"]["lm_head.weight"]
        assert opened == [head_shard] and "shard of model.safetensors.index.json" in str(plan.source)
        assert_same_fit(plan.head_fit(plan.fit_rows(0, VOCAB)), expected)
    embedding = _fit(index, name="model.embed_tokens.weight")  # name= picks the shard too
    assert_same_fit(embedding, fcinterp_fast.fit(model.model.embed_tokens.weight, **OPTIONS))


def test_sharded_pytorch_model_bin_index(tmp_path):
    """``pytorch_model.bin.index.json`` (written here: recent transformers save only safetensors)."""
    model = _llama()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    names = sorted(state)
    folder = tmp_path / "llama-bin"
    folder.mkdir()
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: state[k] for k in part}, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model.config.save_pretrained(folder)
    fit = _fit(folder)
    assert fit.source.path.name == weight_map["lm_head.weight"]
    assert_same_fit(fit, fcinterp_fast.fit(model.lm_head.weight, **OPTIONS))


def test_bad_indexes_and_folders_name_the_file(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"lm_head.weight": "../../etc/passwd.safetensors"}}))
    with pytest.raises(ValueError, match=rf"{index} is not a valid checkpoint index"):
        _fit(index)
    index.write_text("{")
    with pytest.raises(ValueError, match=rf"{index} is not a valid checkpoint index"):
        _fit(index)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=rf"{empty} is a folder without a Hugging Face checkpoint .*notes.txt"):
        _fit(empty)


def test_command_line_fits_a_sharded_folder(tmp_path, capsys):
    from fcinterp_fast import cli

    folder = _saved(_llama(), tmp_path / "llama", max_shard_size="20KB")
    out = tmp_path / "report"
    code = cli.main(["fit", "--weights", str(folder), "--classes", "3", "--out", str(out), "--backend", "torch"])
    assert code == 0, capsys.readouterr().err
    assert "tensor lm_head.weight in" in (out / "index.md").read_text()


# ------------------------------------------------------------------------ head selection
def test_bert_without_a_head_raises_listing_what_it_found(tmp_path):
    model = _bert(head=False)
    with pytest.raises(ValueError, match=r"BertModel has no classifier head .*pooler.dense \(32, 32\).*name="):
        head_weight(model)
    folder = _saved(model, tmp_path / "bert")
    with pytest.raises(
        ValueError, match=r"has no classifier head .*architectures \['BertModel'\].*embeddings.word_embeddings.weight"
    ):
        _fit(folder)


def test_bert_with_a_head(tmp_path):
    model = _bert(head=True)
    assert head_weight(model).data_ptr() == model.classifier.weight.data_ptr()
    fit = _fit(_saved(model, tmp_path / "bert"))
    assert fit.source.name == "classifier.weight" and fit.shape == (7, HIDDEN)


def test_ambiguous_file_lists_every_plausible_candidate_including_embeddings(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "two-heads.safetensors"
    state = {"fc.weight": torch.randn(10, 8), "aux.head.weight": torch.randn(4, 8), "wte.weight": torch.randn(50, 8)}
    save_file(state, path)
    listed = r"aux.head.weight \(4, 8\), fc.weight \(10, 8\), wte.weight \(50, 8\)"
    with pytest.raises(ValueError, match=rf"2 possible head tensors; choose one with name=...: {listed}"):
        _fit(path)
    assert _fit(path, name="wte.weight").shape == (50, 8)


def test_sequential_classifier_file_takes_its_last_layer(tmp_path):
    """torchvision's VGG stores ``classifier.0`` / ``.3`` / ``.6``: the head is the last one."""
    state = {f"classifier.{i}.weight": torch.randn(k, 8) for i, k in ((0, 8), (3, 8), (6, 5))}
    state["features.0.weight"] = torch.randn(8, 3, 3, 3)
    torch.save(state, tmp_path / "vgg.pth")
    assert torch.equal(head_weight(tmp_path / "vgg.pth"), state["classifier.6.weight"])


def test_module_heads_by_whole_names():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(8, 16)  # not an "fc" head
            self.proj = nn.Linear(16, 8)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(), Block())
            self.out = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
            self.score = nn.Linear(8, 3)  # Hugging Face sequence classifiers call their head "score"

    net = Net()
    assert head_weight(net).data_ptr() == net.score.weight.data_ptr()
    del net.score
    with pytest.raises(ValueError, match=r"Net has no classifier head .* 5 linear / conv 1x1 layers"):
        head_weight(net)
    assert head_weight(net, name="out.0").data_ptr() == net.out[0].weight.data_ptr()


# ---------------------------------------------------------------------------------- .npy
def test_npy_heads(tmp_path):
    W = np.random.default_rng(0).standard_normal((300, 24)).astype(np.float32)
    path = tmp_path / "head.npy"
    np.save(path, W)
    plan = plan_fit(path, device="cpu", max_memory=40 * 24 * 330, **OPTIONS)
    assert isinstance(plan.source, FileSource) and plan.block_rows < 300  # streamed, read in place
    expected = fcinterp_fast.fit(torch.from_numpy(W), **OPTIONS)
    assert_same_fit(plan.head_fit(plan.fit_rows(0, 300)), expected)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(W))
    np.save(tmp_path / "big-endian.npy", W.astype(">f4"))
    for other in ("fortran.npy", "big-endian.npy"):
        assert_same_fit(_fit(tmp_path / other), expected)
    np.save(tmp_path / "objects.npy", np.array([[1.0, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects.npy holds Python objects \(a pickle\)"):
        _fit(tmp_path / "objects.npy")
    np.save(tmp_path / "ints.npy", np.ones((3, 3), dtype=np.int32))
    with pytest.raises(TypeError, match=r"ints.npy holds a int32 array"):
        _fit(tmp_path / "ints.npy")
    with pytest.raises(ValueError, match=r"holds one array: name='fc.weight' does not apply"):
        _fit(path, name="fc.weight")
    (tmp_path / "short.npy").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="short.npy is truncated"):
        _fit(tmp_path / "short.npy")
