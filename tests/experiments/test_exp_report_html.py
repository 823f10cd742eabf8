"""report.html: self-contained and offline, and it renders in a real headless Chromium.

Every shipped study runs in CI size (tiny_studies.py); its page must load with no console
errors, draw every plot div, and give a non-blank screenshot (written under the test's tmp
folder, never committed). Without Chromium the browser test skips, unless
ORRERY_REQUIRE_BROWSER=1 (CI installs Chromium and sets it): then it fails.
"""

from __future__ import annotations

import html
import os
import re

import pytest
from headless import Browser, find_chromium
from tiny_studies import SHIPPED

from orrery.experiments.html_report import PLOT_CLASS


@pytest.mark.parametrize("name", SHIPPED)
def test_report_html_is_one_offline_file(tiny_result, name):
    out, res = tiny_result(name)
    page = (out / "report.html").read_text(encoding="utf-8")
    # plain bools: pytest would print the whole 5 MB page on a failed `in`
    assert page.count("Plotly.newPlot") == 1 and page.count("plotly.js v") <= 2  # the library once
    assert len(re.findall(r"<script\b", page)) == 2  # plotly.js inline + the figures
    assert re.search(r"<script[^>]+src=", page) is None and re.search(r"<link[^>]+href=", page) is None
    assert not ('src="http' in page or "src='http" in page)
    study = res.study.describe()
    assert bool(html.escape(study.hypothesis) in page)
    n_divs = page.count(f'class="{PLOT_CLASS}"')
    metrics = len(study.metrics)
    assert n_divs >= metrics  # one figure per metric, plus the domain's own
    if study.domain in ("serving", "fl", "resilience", "fedtrans", "fl_feasibility") or name in ("perseus", "chase"):
        assert n_divs > metrics, "the domain's own figures are missing"
    assert bool("Benjamini-Hochberg" in page and "p_adjusted" in page)


def _require_browser() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("ORRERY_REQUIRE_BROWSER") == "1":
            pytest.fail("ORRERY_REQUIRE_BROWSER=1 but no chromium found (apt-get install chromium)")
        pytest.skip("chromium not installed")
    return binary


@pytest.fixture(scope="module")
def browser():
    b = Browser(_require_browser())
    yield b
    b.close()


def _non_blank(png) -> tuple[float, int]:
    """(fraction of pixels that are not the page background, number of distinct colours)."""
    import numpy as np
    from PIL import Image

    im = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    bg = im[0, 0]
    differs = np.abs(im - bg).sum(axis=2) > 30
    colours = len(np.unique(im.reshape(-1, 3)[:: max(1, im.shape[0] * im.shape[1] // 200_000)], axis=0))
    return float(differs.mean()), colours


@pytest.mark.slow  # a real browser: ~2 s per page on an idle machine; CI runs it
@pytest.mark.parametrize("name", SHIPPED)
def test_report_renders_in_headless_chromium(tiny_result, browser, tmp_path, name):
    out, _ = tiny_result(name)
    page = browser.open(out / "report.html")
    try:
        n = int(page.wait_for("document.body.dataset.plotsRendered", timeout_s=90))
        divs = page.eval(f"document.querySelectorAll('.{PLOT_CLASS}').length")
        drawn = page.eval(
            f"[...document.querySelectorAll('.{PLOT_CLASS}')].filter(d => d.querySelector('svg.main-svg') "
            "&& d.getBoundingClientRect().height > 100 && d.querySelectorAll('.trace, .point, path').length > 0)"
            ".length"
        )
        assert n == divs == drawn > 0
        assert page.errors() == []
        shot = page.screenshot(tmp_path / f"{name}.png")
        frac, colours = _non_blank(shot)
        assert frac > 0.03 and colours > 20, (frac, colours)
    finally:
        page.close()
