"""Any model on the command line: ``models.build_model`` (timm and torchvision architectures with a
checkpoint or an explicit random init, Hugging Face folders) and ``fcinterp fit`` / ``explain``
taking what the API takes: class names, Parquet tables, logging, the device check."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import tiny_vit_folder

import fcinterp_fast
from fcinterp_fast import cli, models, report

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_names(path: Path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(row["class"]): row["class_name"] for row in csv.DictReader(f)}


# ------------------------------------------------------------------------------ build_model
def test_architectures_need_weights_or_an_explicit_random_init(tmp_path):
    with pytest.raises(ValueError, match="has no bundled weights and nothing can be downloaded.*--random-init"):
        models.build_model("resnet18")
    model = models.build_model("resnet18", random_init=True)
    assert type(model).__module__.startswith("timm.") and not model.training
    chosen = models.build_model("torchvision:resnet18", random_init=True)
    assert type(chosen).__module__.startswith("torchvision.")
    assert type(models.build_model("vit_b_16", random_init=True)).__module__.startswith("torchvision.")
    with pytest.raises(ValueError, match=r"unknown model 'resnet181'.*did you mean 'resnet18'"):
        models.build_model("resnet181", random_init=True)


def test_a_checkpoint_is_loaded_strictly_into_the_library_whose_names_fit(tmp_path):
    source = torchvision.models.efficientnet_b0()  # timm and torchvision both have efficientnet_b0
    checkpoint = tmp_path / "efficientnet_b0.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, checkpoint)
    model = models.build_model("efficientnet_b0", checkpoint=checkpoint)
    assert type(model).__module__.startswith("torchvision.")  # timm's module names do not fit
    assert torch.equal(fcinterp_fast.head_weight(model), source.classifier[1].weight)
    safetensors = pytest.importorskip("safetensors.torch")
    resnet = torchvision.models.resnet18()
    safetensors.save_file(resnet.state_dict(), tmp_path / "resnet18.safetensors")
    loaded = models.build_model("torchvision:resnet18", checkpoint=tmp_path / "resnet18.safetensors")
    assert torch.equal(loaded.fc.weight, resnet.fc.weight)
    with pytest.raises(ValueError, match=r"does not fit timm's resnet34: missing: layer1\.2\.conv1\.weight"):
        models.build_model("timm:resnet34", checkpoint=tmp_path / "resnet18.safetensors")
    with pytest.raises(ValueError, match="is a weights file, not a model"):
        models.build_model(checkpoint)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        models.build_model("resnet18", checkpoint=tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    tiny_vit_folder(folder, ["cat", "dog", "bird"], image_size=32, patch_size=16)
    return folder


def test_a_hugging_face_folder_builds_its_architecture(vit_folder):
    model = models.build_model(vit_folder)
    assert type(model).__name__ == "ViTForImageClassification" and not model.training
    assert fcinterp_fast.fit(model).class_names == ["cat", "dog", "bird"]
    with pytest.raises(ValueError, match="its weights are in it"):
        models.build_model(vit_folder, checkpoint=vit_folder / "model.safetensors")


# ------------------------------------------------------------------------------ fcinterp fit
def test_fit_any_architecture_with_its_class_names(tmp_path, capsys):
    out = tmp_path / "report"
    code, printed, err = run_cli(
        capsys, "fit", "--model", "torchvision:resnet18", "--random-init", "--classes", "tench", "--out", out, "-v"
    )
    assert code == 0, err
    assert "fitted torchvision:resnet18 (random init): 1000 classes x 512 features" in printed
    assert "fcinterp fit: fitting a 1000 x 512 float32 head" in err  # -v shows the library's log
    names = table_names(out / "ald.csv")
    assert names[0] == "tench" and names[870] == "tricycle"
    assert "### tench (0): `tench`" in (out / "index.md").read_text()


def test_fit_names_from_a_file_and_from_a_hugging_face_folder(vit_folder, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("zero\none\ntwo\n")
    code, _, err = run_cli(
        capsys, "fit", "--model", vit_folder, "--class-names", names, "--classes", "two", "--out", tmp_path / "a"
    )
    assert code == 0, err
    assert table_names(tmp_path / "a" / "ald.csv") == {0: "zero", 1: "one", 2: "two"}
    code, _, err = run_cli(capsys, "fit", "--model", vit_folder, "--classes", "dog", "--out", tmp_path / "b")
    assert code == 0, err
    assert table_names(tmp_path / "b" / "ald.csv") == {0: "cat", 1: "dog", 2: "bird"}
    weights = vit_folder / "model.safetensors"  # a weights file beside its config.json
    code, _, err = run_cli(
        capsys, "fit", "--weights", weights, "--name", "classifier.weight", "--classes", "bird", "--out", tmp_path / "c"
    )
    assert code == 0, err
    assert table_names(tmp_path / "c" / "ald.csv")[2] == "bird"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet18"], "has no bundled weights and nothing can be downloaded"),
        (["--model", "resnet18", "--random-init", "--class-names", "{names}"], "has 2 class names but the head has"),
        (["--model", "resnet18", "--random-init", "--tables", "excel"], "invalid choice: 'excel'"),
        (["--weights", "{names}", "--random-init"], "--weights is a head already"),
    ],
)
def test_fit_mistakes_exit_2_in_one_line(argv, message, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    argv = [a.replace("{names}", str(names)) for a in argv]
    code, _, err = run_cli(capsys, "fit", *argv, "--out", tmp_path / "report")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "report" / "index.md").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
@pytest.mark.parametrize("command", ["fit", "explain"])
def test_cuda_without_cuda_is_one_line(command, tmp_path, capsys):
    code, _, err = run_cli(capsys, command, "--device", "cuda", "--out", tmp_path / "out")
    assert code == 2 and err.strip().splitlines() == [
        f"fcinterp {command}: error: device='cuda' was asked for, but CUDA is not available here; use device='cpu'"
    ]


def test_fit_warnings_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "fit", "--model", "torchvision:vit_b_16", "--random-init", "--out", tmp_path / "report"
    )
    assert code == 0
    assert "fcinterp fit: warning: every weight of the 1000 x 768 head is 0" in err
    assert "**Warning**: every weight of the 1000 x 768 head is 0" in (tmp_path / "report" / "index.md").read_text()


def test_large_heads_get_a_parquet_table(tmp_path, capsys, monkeypatch):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    head = tmp_path / "head.pth"
    torch.save({"fc.weight": torch.randn(30, 40, generator=torch.Generator().manual_seed(0))}, head)
    out = tmp_path / "report"
    assert run_cli(capsys, "fit", "--weights", head, "--out", out)[0] == 0
    assert (out / "nodes.csv").exists() and not (out / "nodes.parquet").exists()
    monkeypatch.setattr(report, "PARQUET_MIN_CLASSES", 20)
    assert run_cli(capsys, "fit", "--weights", head, "--out", out)[0] == 0
    assert (out / "nodes.parquet").exists() and not (out / "nodes.csv").exists()  # the stale CSV is gone
    assert "[nodes.parquet](nodes.parquet)" in (out / "index.md").read_text()
    fit = fcinterp_fast.fit(head)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "nodes.parquet"), fit.to_pandas())
    assert run_cli(capsys, "fit", "--weights", head, "--tables", "csv", "--out", out)[0] == 0
    assert (out / "nodes.csv").exists() and not (out / "nodes.parquet").exists()


def test_tables_without_pyarrow_fail_before_the_fit_or_fall_back(tmp_path, capsys, monkeypatch):
    for module in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    monkeypatch.setattr(report, "PARQUET_MIN_CLASSES", 20)
    head = tmp_path / "head.pth"
    torch.save({"fc.weight": torch.randn(30, 40)}, head)
    code, _, err = run_cli(capsys, "fit", "--weights", head, "--tables", "parquet", "--out", tmp_path / "a")
    assert code == 2 and "needs pyarrow: pip install pyarrow" in err
    assert not (tmp_path / "a" / "index.md").exists()
    code, _, err = run_cli(capsys, "fit", "--weights", head, "--out", tmp_path / "b")
    assert code == 0 and "30 classes: writing nodes.csv, since" in err
    assert (tmp_path / "b" / "nodes.csv").exists()


def test_to_pandas_without_pandas_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # importing it raises ImportError
    with pytest.raises(ImportError, match=r"HeadFit.to_pandas needs pandas: pip install pandas"):
        fcinterp_fast.fit(torch.randn(4, 30)).to_pandas()


# -------------------------------------------------------------------------- fcinterp explain
def test_explain_any_architecture_by_class_name(tmp_path, capsys):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {k}" for k in range(1000)))
    code, printed, err = run_cli(
        capsys,
        "explain",
        "--model",
        "resnet18",
        "--random-init",
        "--target-layer",
        "layer4",
        "--image",
        image,
        "--class",
        "class 7",
        "--class-names",
        names,
        "--n-samples",
        "2",
        "--depth",
        "2",
        "--out",
        tmp_path / "fig.png",
    )
    assert code == 0, err
    assert printed.strip() == f"wrote {tmp_path / 'fig.png'}"
    with Image.open(tmp_path / "fig.png") as figure:
        assert figure.format == "PNG"


@pytest.mark.parametrize("writer", ["to_csv", "to_parquet"])
def test_table_writers_show_a_bar_counting_classes(writer, tmp_path, capsys):
    if writer == "to_parquet":
        pytest.importorskip("pyarrow")
    fit = fcinterp_fast.fit(torch.randn(5000, 30, generator=torch.Generator().manual_seed(0)), depth=1)
    getattr(fit, writer)(tmp_path / "nodes.table", progress=True)
    shown = capsys.readouterr().err
    assert "write nodes.table" in shown and "/5.00k" in shown and "classes/s" in shown
    getattr(fit, writer)(tmp_path / "nodes.table", progress=False)
    assert capsys.readouterr().err == ""


def test_fit_a_language_model_folder(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=300, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)  # its head is tied to the input embedding
    model.save_pretrained(tmp_path / "gpt2")
    code, printed, err = run_cli(capsys, "fit", "--model", tmp_path / "gpt2", "--classes", "5", "--out", tmp_path / "r")
    assert code == 0, err
    assert "(Hugging Face folder): 300 classes x 16 features" in printed
    assert set(table_names(tmp_path / "r" / "ald.csv").values()) == {""}  # generic LABEL_k are no names
    fitted = fcinterp_fast.fit(model.lm_head.weight)
    with open(tmp_path / "r" / "ald.csv", newline="") as f:
        scales = [float(row["ald_scale"]) for row in csv.DictReader(f)]
    assert scales == fitted.ald.scale.tolist()


def test_a_gpu_index_past_the_last_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, _, err = run_cli(capsys, "fit", "--device", "cuda:3", "--out", tmp_path / "out")
    assert code == 2 and err.strip().splitlines() == [
        "fcinterp fit: error: device='cuda:3' was asked for, but this machine has 1 GPU(s)"
    ]
