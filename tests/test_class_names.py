"""Class names: what the user gives (list, mapping, file, ImageNet subset, torchvision weights) and
what heads carry (Hugging Face id2label and config.json, torchvision's weight metadata, timm's
ImageNet info), in that order; and how names travel through the fit, its tables and lookups."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
import torch
from tiny_models import tiny_vit_folder

import fcinterp_fast
from fcinterp_fast import figures
from fcinterp_fast.classes import class_names, config_class_names, resolve_class_names

torchvision = pytest.importorskip("torchvision")

NAMES = ["cat", "dog", "bird", "tricycle, trike, velocipede", "web site"]


def head(K=5, D=48, seed=0) -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture()
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", fcinterp_fast.FitWarning)
        yield


# ------------------------------------------------------------------------- given by the user
def test_every_form_of_given_names(tmp_path):
    file = tmp_path / "names.txt"
    file.write_text("\n".join(NAMES) + "\n\n")  # blank lines at the end are the end of the file
    mapping = {str(k): name for k, name in enumerate(NAMES)}  # id2label as config.json stores it
    for spec in (NAMES, tuple(NAMES), file, str(file), mapping, dict(enumerate(NAMES))):
        assert resolve_class_names(spec, 5) == NAMES
    imagenet = resolve_class_names("imagenet-1k", 1000)
    assert imagenet[0].startswith("tench") and len(imagenet) == 1000
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert resolve_class_names(weights, 1000) == list(weights.meta["categories"])


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (NAMES[:4], ValueError, "has 4 class names but the head has 5 rows"),
        ([*NAMES[:4], 5], TypeError, "class name 4 must be a str, got int 5"),
        ({0: "a", 2: "b"}, ValueError, "must map every class index 0..1 to a name"),
        ("no-such-file.txt", FileNotFoundError, "no class-name file 'no-such-file.txt'"),
        (42, TypeError, "class_names must be a list of str"),
        ("imagenet-1k", ValueError, "has 1000 class names but the head has 5 rows"),
    ],
)
def test_bad_given_names_say_what_is_wrong(spec, error, message):
    with pytest.raises(error, match=message):
        resolve_class_names(spec, 5)


def test_a_file_with_an_empty_line_names_it(tmp_path):
    file = tmp_path / "names.txt"
    file.write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="line 2 is empty"):
        resolve_class_names(file, 3)


def test_given_names_travel_through_the_fit_tables_and_lookups(tmp_path, no_warnings):
    W = head()
    fit = fcinterp_fast.fit(W, class_names=NAMES, min_size=4)
    assert fit.class_names == NAMES
    assert fit.class_index("trike") == 3 and fit.class_index("web site") == 4
    assert torch.equal(fit.members("dog", "+"), fit.members(1, "+"))
    table = fit.to_pandas()
    assert (table.groupby("class")["class_name"].first().tolist()) == NAMES
    fit.to_csv(tmp_path / "nodes.csv")
    with open(tmp_path / "nodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(int(r["class"]), r["class_name"]) for r in rows} == set(enumerate(NAMES))
    one = figures.plot_fits(fit, "tricycle")  # one class, by name
    assert len(one.axes) == 2 and "tricycle (3)" in one.axes[0].get_title()
    assert len(figures.plot_fits(fit, 1).axes) == 2 and len(figures.plot_fits(fit, ["cat", 4]).axes) == 4


def test_wrong_number_of_names_fails_before_the_fit(monkeypatch):
    monkeypatch.setattr(fcinterp_fast.api, "iter_blocks", None)  # reading a block would fail differently
    with pytest.raises(ValueError, match="has 3 class names but the head has 5 rows"):
        fcinterp_fast.fit(head(), class_names=NAMES[:3])


# ----------------------------------------------------------------------- carried by the head
def test_torchvision_classifiers_get_the_categories_of_their_weights(no_warnings):
    model = torchvision.models.resnet18()  # random init: nothing downloaded
    expected = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    assert class_names(model, 1000) == expected
    assert fcinterp_fast.fit(model).class_names == expected
    assert fcinterp_fast.fit(torchvision.models.resnet18(num_classes=10)).class_names is None


def test_timm_imagenet_heads_get_timm_names(no_warnings):
    timm = pytest.importorskip("timm")
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    names = fcinterp_fast.fit(model).class_names
    assert names is not None and len(names) == 1000 and names[870].startswith("tricycle")
    small = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=7)
    assert fcinterp_fast.fit(small).class_names is None


def test_given_names_win_over_the_models(no_warnings):
    model = torchvision.models.resnet18(num_classes=5)
    assert fcinterp_fast.fit(model, class_names=NAMES).class_names == NAMES


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    """A tiny Hugging Face ViT classifier with labels, saved as a checkpoint folder."""
    folder = tmp_path_factory.mktemp("vit")
    model = tiny_vit_folder(folder, NAMES)
    return model, folder


def test_hugging_face_id2label_names_the_classes(vit_folder, no_warnings):
    model, folder = vit_folder
    assert fcinterp_fast.fit(model).class_names == NAMES
    weights = next(folder.glob("*.safetensors"))
    # a checkpoint file beside its config.json, and the folder's config for another head of 5 rows
    assert fcinterp_fast.fit(weights, name="classifier.weight").class_names == NAMES
    assert config_class_names(folder, 5) == NAMES


def test_generic_hugging_face_labels_are_no_names(tmp_path, no_warnings):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, num_labels=3
    )
    model = transformers.BertForSequenceClassification(config)  # id2label {0: "LABEL_0", ...}
    assert fcinterp_fast.fit(model).class_names is None
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    assert config_class_names(tmp_path, 2) is None


def test_names_of_another_length_are_not_used_and_say_so(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    config.id2label = {0: "negative", 1: "positive"}  # a sentiment config on a masked-LM head
    model = transformers.BertForMaskedLM(config)  # its padding row 0 is zero: a degenerate row too
    with pytest.warns(fcinterp_fast.FitWarning, match="gives 2 class names but the head has 40 rows"):
        assert fcinterp_fast.fit(model).class_names is None
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "a", "1": "b", "2": "c"}}))
    with pytest.warns(fcinterp_fast.FitWarning, match="gives 3 class names but the head has 4 rows"):
        assert config_class_names(tmp_path, 4) is None


def test_explain_takes_class_names_for_its_targets(no_warnings):
    model = torchvision.models.resnet18(num_classes=5).eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    options = dict(method="gradcam++", target_layer="layer4")
    by_name = fcinterp_fast.explain(model, image, [("bird", "+"), ("trike", None)], class_names=NAMES, **options)
    by_index = fcinterp_fast.explain(model, image, [(2, "+"), (3, None)], **options)
    assert torch.equal(by_name, by_index)
    with pytest.raises(ValueError, match="given by name, but this head has no class names"):
        fcinterp_fast.explain(model, image, [("bird", "+")], **options)
    with pytest.raises(ValueError, match="has 4 class names but the head has 5 rows"):
        fcinterp_fast.explain(model, image, [(2, "+")], class_names=NAMES[:4], **options)


def test_an_unreadable_config_gives_no_names_and_says_so(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "a", "2": "b"}}))
    with pytest.warns(fcinterp_fast.FitWarning, match="must map every class index 0..1 to a name"):
        assert config_class_names(tmp_path, 2) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.warns(fcinterp_fast.FitWarning, match="cannot read class names from"):
        assert config_class_names(tmp_path, 2) is None


def test_a_model_with_a_malformed_id2label_is_fitted_without_names(vit_folder):
    """As for a config.json beside a file: the names are warned about and dropped, the fit runs."""
    import copy

    model, _ = vit_folder
    model = copy.deepcopy(model)
    model.config.id2label = {k + 1: name for k, name in enumerate(NAMES)}  # 1..K: not the row indices
    with pytest.warns(fcinterp_fast.FitWarning, match=r"id2label are not used"):
        assert fcinterp_fast.fit(model).class_names is None
