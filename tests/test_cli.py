"""The ``fcinterp`` command line end to end, reports that fail or are interrupted, and the figures of
``fcinterp_fast.figures``."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import fcinterp_fast
from fcinterp_fast import cli, report
from fcinterp_fast import figures as plot
from fcinterp_fast.api import FitPlan
from fcinterp_fast.cli.fit import parse_size

PAPER_CLASSES = {"tricycle": 870, "web site": 916, "whiptail": 41}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path, min_size=(400, 300)) -> None:
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size


# ------------------------------------------------------------------------- the bundled model
@pytest.fixture(scope="module")
def bundled_fit(lite0):
    return fcinterp_fast.fit(lite0)


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory):
    """``fcinterp demo``: ``fit`` on the bundled model with the paper's classes (by name)."""
    out = tmp_path_factory.mktemp("demo") / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["demo", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_fit_report_tables_match_the_fit(bundled_report, bundled_fit):
    out, _ = bundled_report
    rows = csv_rows(out / "nodes.csv")
    assert len(rows) == int((bundled_fit.count > 0).sum())
    assert {r["node"] for r in rows} == set(bundled_fit.nodes)
    tricycle_plus = next(r for r in rows if r["class"] == "870" and r["node"] == "+")
    j = bundled_fit.nodes.index("+")
    assert int(tricycle_plus["count"]) == int(bundled_fit.count[870, j])
    assert float(tricycle_plus["r2"]) == pytest.approx(float(bundled_fit.r2[870, j]), rel=1e-12)
    assert tricycle_plus["class_name"].startswith("tricycle")

    ald = csv_rows(out / "ald.csv")
    assert [int(r["class"]) for r in ald] == list(range(1000))
    assert float(ald[41]["ald_kappa"]) == pytest.approx(float(bundled_fit.ald.kappa[41]), rel=1e-12)
    assert float(ald[41]["ald_lambda"]) == pytest.approx(1 / float(ald[41]["ald_scale"]), rel=1e-12)


@pytest.mark.slow
def test_fit_report_figures_and_summary(bundled_report, bundled_fit):
    out, _ = bundled_report
    figures = ["fits.png", "r2_by_node.png", "gof_summary.png", "null_comparison.png"] + [
        f"{kind}_{k}.png" for k in PAPER_CLASSES.values() for kind in ("split", "nodes", "qq")
    ]
    for name in figures:
        assert_png(out / name)
    index = (out / "index.md").read_text()
    page = (out / "index.html").read_text(encoding="utf-8")
    for name in figures + ["nodes.csv", "ald.csv", "gof.csv", "summary.csv"]:
        assert f"({name})" in index, f"index.md does not link {name}"
        assert f'href="{name}"' in page, f"index.html does not link {name}"
    for k in PAPER_CLASSES.values():
        assert f'id="class-{k}"' in page
    assert "(index.html)" in index
    for k in PAPER_CLASSES.values():
        assert f"### {plot.class_label(bundled_fit, k)}" in index
    # The summary's median R^2 of the root "+" node over all classes, as the fit gives it.
    median_plus = float(bundled_fit.r2[:, bundled_fit.nodes.index("+")].quantile(0.5))
    assert f"| 1 | `+` | 1000 | {median_plus:.3f} |" in index


@pytest.mark.slow
def test_demo_prints_the_classes_and_where_the_report_is(bundled_report):
    out, printed = bundled_report
    assert f"report: {out / 'index.html'}" in printed
    assert printed.strip().endswith(f"explanations: {out / 'explain_grace_hopper.png'}")
    for name, k in PAPER_CLASSES.items():
        assert f"{name} ({k}): + R^2" in printed


@pytest.mark.slow
def test_demo_explains_the_bundled_photo(bundled_report):
    out, _ = bundled_report
    assert_png(out / "explain_grace_hopper.png")
    index = (out / "index.md").read_text()
    assert "(explain_grace_hopper.png)" in index and "`military uniform`" in index


# --------------------------------------------------------------------------- any head file
@pytest.fixture()
def safetensors_head(tmp_path):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    head = torch.distributions.Laplace(0.0, 0.05).sample((12, 96)).to(torch.float32)
    path = tmp_path / "head.safetensors"
    tensors = {
        "backbone.proj.weight": torch.randn(96, 32, generator=generator),
        "aux.classifier.weight": torch.randn(4, 96, generator=generator),  # a second head: --name needed
        "lm_head.weight": head,
    }
    save_file(tensors, str(path))
    return path


def test_fit_weights_file_with_tensor_name(safetensors_head, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys,
        "fit",
        "--weights",
        safetensors_head,
        "--name",
        "lm_head.weight",
        "--classes",
        "3",
        "-1",
        "--tree",
        "full",
        "--depth",
        "2",
        "--min-size",
        "4",
        "--grid",
        "linspace",
        "--out",
        out,
    )
    assert code == 0, err
    expected = fcinterp_fast.fit(
        safetensors_head, name="lm_head.weight", tree="full", depth=2, min_size=4, grid="linspace"
    )
    assert len(csv_rows(out / "nodes.csv")) == int((expected.count > 0).sum())
    assert len(csv_rows(out / "ald.csv")) == 12
    for name in ("fits.png", "split_3.png", "nodes_3.png", "split_11.png", "nodes_11.png", "r2_by_node.png"):
        assert_png(out / name)
    index = (out / "index.md").read_text()
    assert "tensor lm_head.weight" in index and "### class 11" in index
    assert "class 3 (n" not in stdout  # heads without names are labelled "class k"
    assert "class 3: + R^2" in stdout


def test_fit_with_null_heads(safetensors_head, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["fit", "--weights", safetensors_head, "--name", "lm_head.weight", "--min-size", "4", "--out", out]
    code, stdout, err = run_cli(capsys, *argv, "--null", "normal,ald", "--null-seed", "5", "--classes", "2")
    assert code == 0, err
    assert f"report: {out / 'index.html'}" in stdout
    assert "ALD beats the normal by AIC in " in stdout and "median R^2 of +: trained " in stdout
    assert_png(out / "null_comparison.png", min_size=(200, 200))
    expected = fcinterp_fast.fit(
        safetensors_head, name="lm_head.weight", min_size=4, null=("normal", "ald"), null_seed=5
    )
    rows = csv_rows(out / "summary.csv")
    assert {r["head"] for r in rows} == {"trained", "null normal", "null ald"}
    r2 = next(r for r in rows if (r["quantity"], r["node"], r["head"]) == ("r2", "+", "null ald"))
    j = expected.null["ald"].nodes.index("+")
    assert float(r2["median"]) == pytest.approx(float(np.nanmedian(expected.null["ald"].r2[:, j].numpy())), rel=1e-12)
    gof = csv_rows(out / "gof.csv")
    assert float(gof[2]["ks"]) == pytest.approx(float(expected.gof.ks[2]), rel=1e-12)
    code, _, err = run_cli(capsys, *argv)  # no null heads: the comparison figure of the last run goes
    assert code == 0, err
    assert not (out / "null_comparison.png").exists()
    code, _, err = run_cli(capsys, *argv, "--null", "normal", "--distributed")
    assert code == 2 and "--null is not supported with --distributed" in err


def test_fit_opens_the_head_file_once(safetensors_head, tmp_path, capsys, monkeypatch):
    from fcinterp_fast.heads import find

    opened = []
    original = find.open_file_head
    monkeypatch.setattr(find, "open_file_head", lambda *args: opened.append(args) or original(*args))
    code, _, err = run_cli(capsys, "fit", "--weights", safetensors_head, "--name", "lm_head.weight", "--out", tmp_path)
    assert code == 0, err
    assert opened == [(safetensors_head, "lm_head.weight")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classes", "tricyle"], "did you mean 'tricycle'"),
        (["--classes", "1000"], "class index 1000 out of range for a head of 1000 classes"),
        (["--tree", "full"], "tree='full' needs an explicit depth"),
        (["--min-size", "-1"], "min_size must be an int in 0..9223372036854775807, got -1"),
        (["--max-memory", "lots"], "'lots' is not a size in bytes"),
        (["--backend", "gpu"], "invalid choice: 'gpu'"),
        (["--null", "normal,cauchy"], "'normal,cauchy' is not a list of distinct null kinds"),
        (["--model", "efficientnet_lite0", "--weights", "x.safetensors"], "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, tmp_path, capsys):
    code, out, err = run_cli(capsys, "fit", *argv, "--out", tmp_path)
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "index.md").exists() and not (tmp_path / "index.html").exists()


def test_bad_head_files_exit_2_with_a_message(safetensors_head, tmp_path, capsys):
    code, _, err = run_cli(capsys, "fit", "--weights", safetensors_head, "--out", tmp_path)
    assert code == 2 and "possible head tensors" in err and "lm_head.weight" in err
    code, _, err = run_cli(
        capsys,
        "fit",
        "--weights",
        safetensors_head,
        "--name",
        "lm_head.weight",
        "--classes",
        "tench",
        "--out",
        tmp_path,
    )
    assert code == 2 and "has no class names; pass its index" in err
    code, _, err = run_cli(capsys, "fit", "--weights", tmp_path / "missing.safetensors", "--out", tmp_path)
    assert code == 2 and "no such head file" in err


def test_traceback_flag_shows_the_traceback_of_a_user_error(safetensors_head, tmp_path, capsys):
    code, _, err = run_cli(capsys, "--traceback", "fit", "--weights", safetensors_head, "--out", tmp_path)
    assert code == 2 and "Traceback (most recent call last)" in err and "ValueError" in err
    assert err.splitlines()[-1].startswith("fcinterp fit: error: ") and "possible head tensors" in err.splitlines()[-1]


@pytest.mark.parametrize("error", ["RuntimeError('the kernel failed')", "IndexError('list index out of range')"])
def test_errors_that_are_not_the_users_show_the_traceback_and_exit_1(error, monkeypatch, tmp_path, capsys):
    """Only the user's mistakes are one line and exit 2; a RuntimeError or IndexError is a bug."""
    module = "def add_arguments(parser):\n    pass\n\n\ndef run(args):\n    raise " + error + "\n"
    name = "buggy_" + error.split("(")[0].lower()  # one module per case: imports are cached
    (tmp_path / f"{name}.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "buggy", cli.Command(name, "raises"))
    code, _, err = run_cli(capsys, "buggy")
    assert code == 1
    assert "Traceback (most recent call last)" in err and error.split("(")[0] in err
    assert err.splitlines()[-1] == "fcinterp buggy: internal error (traceback above)"


# ------------------------------------------------------------------- interrupted or failing output
@pytest.fixture(scope="module")
def report_fit():
    """A small fit: its report has every kind of file but takes a second."""
    return fcinterp_fast.fit(torch.randn(6, 96, generator=torch.Generator().manual_seed(2)), min_size=4)


@pytest.fixture()
def blank_figures(monkeypatch):
    """Reports drawn with blank figures: what these tests check is which files end up where."""
    for name in ("plot_r2_summary", "plot_fits", "plot_split", "plot_node_fits"):
        monkeypatch.setattr(report.plot, name, lambda *args: Figure(figsize=(1, 1)))
    for name in ("plot_qq", "plot_null_comparison", "plot_gof_summary"):
        monkeypatch.setattr(report.gof_plot, name, lambda *args: Figure(figsize=(1, 1)))


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def fail_midway(monkeypatch, where: str, failure: str) -> None:
    """Make writing the first CSV (``where="csv"``) or figure (``"figure"``) stop part-way, after
    some of it is written: ``failure`` ``"ENOSPC"`` (a full disk) or ``"Ctrl-C"``."""

    def fail():
        raise OSError(errno.ENOSPC, "No space left on device") if failure == "ENOSPC" else KeyboardInterrupt

    if where == "csv":
        real_writer = csv.writer

        class HalfWriter:
            def __init__(self, f):
                self.writer = real_writer(f)
                self.writerow = self.writer.writerow

            def writerows(self, rows):
                rows = list(rows)
                self.writer.writerows(rows[: len(rows) // 2])
                fail()

        monkeypatch.setattr(csv, "writer", HalfWriter)
    else:

        def half_savefig(figure, path, **kwargs):
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n half")
            fail()

        monkeypatch.setattr(Figure, "savefig", half_savefig)


@pytest.mark.parametrize("where", ["csv", "figure"])
@pytest.mark.parametrize("failure", ["ENOSPC", "Ctrl-C"])
def test_a_failed_report_leaves_the_previous_one_as_it_was(
    report_fit, blank_figures, tmp_path, monkeypatch, where, failure
):
    out = tmp_path / "report"
    report.write_report(report_fit, out, [0])
    before = folder_contents(out)
    fail_midway(monkeypatch, where, failure)
    with pytest.raises(OSError if failure == "ENOSPC" else KeyboardInterrupt) as raised:
        report.write_report(report_fit, out, [1], head="another head")
    assert folder_contents(out) == before  # no half file under a final name, no temporary left behind
    if failure == "ENOSPC":
        name = "nodes.csv" if where == "csv" else "r2_by_node.png"
        assert str(raised.value) == f"[Errno 28] cannot write {out / name}: No space left on device"


def test_a_report_removes_the_figures_it_no_longer_draws(report_fit, blank_figures, tmp_path):
    out = tmp_path / "report"
    report.write_report(report_fit, out, [0])
    (out / "explain_grace_hopper.png").write_bytes(b"")  # from an earlier fcinterp demo
    (out / "notes.txt").write_text("the user's own")
    report.write_report(report_fit, out, [1])
    tables = ["ald.csv", "gof.csv", "summary.csv", "index.html", "index.md", "nodes.csv", "r2_by_node.png"]
    tables.append("gof_summary.png")
    chosen = ["fits.png", "nodes_1.png", "split_1.png", "qq_1.png"]
    assert sorted(folder_contents(out)) == sorted([*tables, *chosen, "notes.txt"])
    report.write_report(report_fit, out, [])
    assert sorted(folder_contents(out)) == sorted([*tables, "notes.txt"])


@pytest.mark.parametrize("command", ["fit", "demo"])
def test_unwritable_out_exits_2_before_the_fit(command, safetensors_head, tmp_path, capsys, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("the fit started before --out was checked")

    monkeypatch.setattr(FitPlan, "fit_rows", no_fit)
    monkeypatch.setattr(fcinterp_fast.models, "load", no_fit)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "report"
    head = ["--weights", safetensors_head, "--name", "lm_head.weight"] if command == "fit" else []
    code, _, err = run_cli(capsys, command, *head, "--out", out)
    assert code == 2
    assert err == f"fcinterp {command}: error: [Errno 20] cannot write into the folder {out}: Not a directory\n"


def test_a_full_disk_exits_2_naming_the_file_and_leaves_no_report(
    safetensors_head, blank_figures, tmp_path, capsys, monkeypatch
):
    fail_midway(monkeypatch, "csv", "ENOSPC")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "fit", "--weights", safetensors_head, "--name", "lm_head.weight", "--out", out)
    assert code == 2
    assert err == f"fcinterp fit: error: [Errno 28] cannot write {out / 'nodes.csv'}: No space left on device\n"
    assert folder_contents(out) == {}


# ------------------------------------------------------------------------------------ explain
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--class", "militray uniform"], "no class named 'militray uniform'; did you mean 'military uniform'"),
        (["--class", "-1001"], "class index -1001 out of range for a head of 1000 classes"),
        (["--image", "missing.jpg"], "missing.jpg"),
        (["--n-samples", "0"], "n_samples"),
    ],
)
def test_explain_bad_input_exits_2_with_a_message(argv, message, tmp_path, capsys):
    """Through the fcinterp entry point (tests/test_cam.py runs the command's own ``run``)."""
    code, _, err = run_cli(capsys, "explain", *argv, "--depth", "1", "--out", tmp_path / "fig.png")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "fig.png").exists()
    code, _, err = run_cli(capsys, "--traceback", "explain", *argv, "--depth", "1", "--out", tmp_path / "fig.png")
    assert code == 2 and "Traceback (most recent call last)" in err and message in err  # every sub-command


# ----------------------------------------------------------------------------- the registry
def test_help_lists_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name, command in cli.COMMANDS.items():
        assert name in out and command.help in out


def test_no_command_or_unknown_command_exits_2(capsys):
    assert run_cli(capsys)[0] == 2
    code, _, err = run_cli(capsys, "fitt")
    assert code == 2 and "invalid choice: 'fitt'" in err


def test_missing_command_module_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ghost", cli.Command("fcinterp_fast.no_such_module", "not written yet"))
    code, _, err = run_cli(capsys, "ghost")
    assert code == 2
    assert (
        "the 'ghost' command is not part of this installation (module fcinterp_fast.no_such_module is missing)" in err
    )


def test_command_with_a_missing_dependency_is_a_clear_error(monkeypatch, tmp_path, capsys):
    (tmp_path / "needs_dependency.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "needy", cli.Command("needs_dependency", "needs a missing package"))
    code, _, err = run_cli(capsys, "needy")
    assert code == 2
    assert "the 'needy' command cannot start: No module named 'no_such_dependency_xyz'" in err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "fcinterp_fast.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"fcinterp {fcinterp_fast.__version__}"


@pytest.mark.parametrize(("text", "size"), [("1000", 1000), ("256M", 256 * 2**20), ("2g", 2 * 2**30), ("1.5KiB", 1536)])
def test_parse_size(text, size):
    assert parse_size(text) == size


# ------------------------------------------------------------------------------- the figures
@pytest.fixture(scope="module")
def small_fits():
    generator = torch.Generator().manual_seed(1)
    W = torch.randn(5, 300, generator=generator, dtype=torch.float64)
    W[2, :150] = 0.0  # zeros belong to no node
    return {
        "chain": fcinterp_fast.fit(W, min_size=10),
        "full": fcinterp_fast.fit(W, tree="full", depth=3, root="mean", grid="linspace"),
    }


@pytest.mark.parametrize("tree", ["chain", "full"])
def test_node_curve_is_the_data_of_the_fitted_line(small_fits, tree):
    fit = small_fits[tree]
    for k in range(len(fit)):
        for node in fit.nodes:
            curve = plot.node_curve(fit, k, node)
            if curve.x.size < 3:  # absent, all zeros, or too few magnitudes for a residual
                continue
            assert np.all(np.diff(curve.y) >= 0)
            slope, intercept = np.polyfit(curve.x, curve.y, 1)
            assert slope == pytest.approx(curve.slope, rel=1e-9, abs=1e-12)
            assert intercept == pytest.approx(curve.intercept, rel=1e-9, abs=1e-12)
            residual = curve.y - (slope * curve.x + intercept)
            r2 = 1 - (residual**2).sum() / ((curve.y - curve.y.mean()) ** 2).sum()
            assert r2 == pytest.approx(curve.r2, rel=1e-9)
    assert plot.node_curve(small_fits["chain"], 2, "+").y.size == int((fit.source.rows(2, 3) > 0).sum())


def test_plot_fits_draws_one_panel_per_class_and_node(small_fits, tmp_path):
    fit = small_fits["chain"]
    figure = plot.plot_fits(fit, [0, 2, 4], nodes=("+", "-", "+*"))
    assert len(figure.axes) == 9
    first = figure.axes[0]
    dots, line = first.lines
    np.testing.assert_allclose(dots.get_ydata(), plot.node_curve(fit, 0, "+").y)
    assert "class 0, +: $R^2$ = " in first.get_title()
    figure.savefig(tmp_path / "fits.png", dpi=60)
    assert_png(tmp_path / "fits.png", min_size=(300, 300))


def test_plot_fits_marks_absent_nodes(small_fits):
    fit = small_fits["chain"]
    deep = fit.nodes[-1]
    absent = int((fit.count[:, -1] == 0).nonzero()[0])
    figure = plot.plot_fits(fit, [absent], nodes=(deep,))
    assert figure.axes[0].get_title().endswith("absent")


@pytest.mark.parametrize("tree", ["chain", "full"])
def test_split_and_node_figures(small_fits, tree, tmp_path):
    fit = small_fits[tree]
    present = int((fit.count[1] > 0).sum())
    node_fits = plot.plot_node_fits(fit, 1)
    if tree == "chain":  # two rows (+ and - chains) over the deepest level either reaches
        levels = max(len(n) for j, n in enumerate(fit.nodes) if fit.count[1, j] > 0)
        assert len(node_fits.axes) == 2 * levels
    else:
        assert len(node_fits.axes) == present == 14
    split = plot.plot_split(fit, 1)
    bars = split.axes[1].patches
    assert len(bars) == present
    widths = sorted(b.get_width() for b in bars)
    expected = sorted(float(fit.hi[1, j] - fit.lo[1, j]) for j in range(len(fit.nodes)) if fit.count[1, j] > 0)
    np.testing.assert_allclose(widths, expected)
    for name, figure in (("split.png", split), ("nodes.png", node_fits), ("r2.png", plot.plot_r2_summary(fit))):
        figure.savefig(tmp_path / name, dpi=50)
        assert_png(tmp_path / name, min_size=(200, 150))


@pytest.mark.parametrize("tree", ["chain", "full"])
def test_figures_of_degenerate_rows(tree, tmp_path):
    W = torch.zeros(4, 50)  # row 0: all zeros (no node at all)
    W[1] = 1.0  # all equal: one node, not split, no ALD density
    W[2, :3] = torch.tensor([1.0, -2.0, 3.0])  # nodes of one magnitude: R^2 NaN
    W[3] = torch.linspace(-1, 2, 50)
    fit = fcinterp_fast.fit(W, tree=tree, depth=None if tree == "chain" else 2, min_size=2)
    figures = [plot.plot_fits(fit, range(4)), plot.plot_r2_summary(fit)]
    figures += [draw(fit, k) for k in range(3) for draw in (plot.plot_split, plot.plot_node_fits)]
    for i, figure in enumerate(figures):
        figure.savefig(tmp_path / f"{i}.png", dpi=30)
        assert_png(tmp_path / f"{i}.png", min_size=(60, 60))
    assert [ax.get_title().endswith("absent") for ax in figures[0].axes[:2]] == [True, True]


def test_node_groups_and_class_labels(small_fits, bundled_fit):
    chain, full = small_fits["chain"], small_fits["full"]
    assert [(level, side) for level, side, _ in plot.node_groups(chain)][:4] == [(1, "+"), (1, "-"), (2, "+"), (2, "-")]
    assert [len(columns) for _, _, columns in plot.node_groups(full)] == [1, 1, 2, 2, 4, 4]
    assert plot.class_label(chain, 3) == "class 3"
    assert plot.class_label(bundled_fit, "web site") == "web site (916)"
    assert plot.pretty_node("+-") == "+\u2212"
