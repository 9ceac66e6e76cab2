"""``report/index.html`` in a real browser: headless Chromium (the system's, /usr/bin/chromium) driven by
playwright. It loads with no console error and no network request, the search box filters the class
table, a click on a column header sorts it, and a screenshot is not blank. Without playwright or a
Chromium these tests skip, saying so; the page's own checks (CSP hashes, nothing external) run
without a browser.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import fcinterp_fast
from fcinterp_fast import report

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def _chromium() -> str | None:
    for path in (os.environ.get("FCINTERP_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    """The report of a small head whose classes have names (one of them "tricycle"), with nulls
    and chosen classes; figures blank but real PNGs (drawing is tested elsewhere)."""
    generator = torch.Generator().manual_seed(8)
    W = torch.distributions.Laplace(0.0, 0.05).sample((30, 160)).to(torch.float32)
    W += 0.01 * torch.randn(30, 160, generator=generator)
    fit = fcinterp_fast.fit(W, null=("normal", "ald"), null_seed=2)
    fit.class_names = [f"class name {k}" for k in range(30)]
    fit.class_names[7] = "tricycle, trike, velocipede"
    # any text: a "<!--<script>" inside the page's data script once swallowed the page's own script
    fit.class_names[3] = "class name 3 <!--<script> & </script> $x$"
    out = tmp_path_factory.mktemp("html") / "report"
    with pytest.MonkeyPatch.context() as patch:
        for module, names in (
            (report.plot, ("plot_r2_summary", "plot_fits", "plot_split", "plot_node_fits")),
            (report.gof_plot, ("plot_qq", "plot_null_comparison", "plot_gof_summary")),
        ):
            for name in names:
                patch.setattr(module, name, lambda *args: _tiny_figure())
        index = report.write_report(fit, out, [7, 3], head="a test head")
    return index, fit


def test_an_explanation_is_a_png_the_report_owns():
    """The page embeds it as a PNG and the next run removes it as its own: an .svg was shown as a
    broken image and left behind."""
    from fcinterp_fast.cam import CamOptions

    for filename in ("explain_photo.svg", "photo.png", "explain_.png"):
        with pytest.raises(ValueError, match="explain_<name>.png"):
            report.Explanation(_tiny_figure(), filename, "tricycle", "a photo", CamOptions(), 0)
    report.Explanation(_tiny_figure(), "explain_photo.png", "tricycle", "a photo", CamOptions(), 0)


def _tiny_figure() -> Figure:
    figure = Figure(figsize=(2, 1.5))
    figure.subplots().plot([0, 1], [1, 0])
    return figure


def _csp(text: str) -> str:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text)
    assert match, "no Content-Security-Policy meta tag"
    return match[1].replace("&#x27;", "'")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_page_is_self_contained(page_path):
    index, fit = page_path
    assert index.name == "index.html" and (index.parent / "index.md").exists()
    text = index.read_text(encoding="utf-8")
    csp = _csp(text)
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-inline" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", text, flags=re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert f"'{_sha256(scripts[0])}'" in csp and f"'{_sha256(styles[0])}'" in csp
    sources = re.findall(r'\ssrc="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(href|src)=\"(https?:)?//", text)
    for name in ("nodes.csv", "ald.csv", "gof.csv", "summary.csv", "qq_7.png"):
        assert f'href="{name}"' in text and (index.parent / name).exists()
    assert 'id="class-7"' in text and 'id="class-3"' in text  # a panel per chosen class


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = _chromium()
    if executable is None:
        pytest.skip(f"no Chromium found (looked at {', '.join(CHROMIUM_CANDIDATES)}; apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        try:  # the system's browser: playwright never downloads one here
            chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as error:
            pytest.skip(f"Chromium at {executable} does not start: {str(error).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, page_path):
    index, fit = page_path
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    events = {"requests": [], "errors": []}
    page.on("request", lambda request: events["requests"].append(request.url))
    page.on("console", lambda message: message.type == "error" and events["errors"].append(message.text))
    page.on("pageerror", lambda error: events["errors"].append(str(error)))
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    yield page, events, fit
    page.close()


def _column(page, i: int) -> list[str]:
    return page.locator(f"#class-table tbody tr:visible td:nth-child({i + 1})").all_inner_texts()


def test_loads_without_console_errors_or_requests(page):
    page, events, fit = page
    assert events["errors"] == []  # a blocked script, style or image (CSP) is a console error too
    assert events["requests"] == [page.url]  # the page itself, nothing else
    assert page.locator("#class-table tbody tr").count() == len(fit)
    assert page.locator("#class-count").inner_text() == f"{len(fit)} of {len(fit)} classes"


def test_search_leaves_the_matching_row(page):
    page, _, fit = page
    page.locator("#class-search").fill("tricycle")
    assert _column(page, 0) == ["7"] and _column(page, 1) == ["tricycle, trike, velocipede"]
    page.locator("#class-search").fill("trike")  # every synonym is searched
    assert _column(page, 0) == ["7"]
    page.locator("#class-search").fill("<!--<script>")
    assert _column(page, 0) == ["3"] and _column(page, 1) == [fit.class_names[3]]
    hidden = page.locator("#class-table tbody tr").evaluate_all("rows => rows.filter(r => r.hidden).length")
    assert hidden == len(fit) - 1
    page.locator("#class-search").fill("")
    assert page.locator("#class-table tbody tr:visible").count() == len(fit)


def test_a_click_on_a_header_sorts_by_that_column(page):
    page, _, fit = page
    headers = page.locator("#class-table thead th").all_inner_texts()
    kappa = headers.index("\u03ba")
    header = page.locator("#class-table thead th").nth(kappa)
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    order = [int(k) for k in _column(page, 0)]
    np.testing.assert_array_equal(order, np.argsort(fit.ald.kappa.numpy(), kind="stable"))
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    values = [float(v) for v in _column(page, kappa)]
    assert values == sorted(values, reverse=True)
    name = page.locator("#class-table thead th").nth(1)
    name.click()
    names = _column(page, 1)
    assert names[0] == "class name 0" and names[-1] == "tricycle, trike, velocipede"


def test_screenshot_is_not_blank(page, tmp_path):
    page, _, _ = page
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "page.png"
    page.screenshot(path=str(path), full_page=False)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 500 and pixels.std() > 10, pixels.std()
    assert (pixels < 128).mean() > 0.005  # text and figures, not an empty white page
