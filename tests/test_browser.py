"""planner.review.browser: self-contained HTML pages rendered in real headless Chromium, offline.

Skipped when Chromium/ChromeDriver (Debian's ``chromium`` and ``chromium-driver``) or selenium is
missing — except under CI (``$CI`` set), where ``.ci/run`` installs them and a skip would hide that.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.review.browser import RenderResult, find_chromium, render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEST_BUDGET_S = 15.0


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run should have installed it)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[None]:
    """Skip without a browser; fail any test that takes more than its budget."""
    if find_chromium() is None:
        _unavailable("headless Chromium not found: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium not installed: pip install -e '.[dev]'")
    start = time.monotonic()
    yield
    elapsed = time.monotonic() - start
    assert elapsed < TEST_BUDGET_S, f"render took {elapsed:.1f} s (budget {TEST_BUDGET_S:g} s)"


def _png_b64() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    ax.plot([0, 1, 2, 3], [1, 3, 2, 4], marker="o")
    ax.set_title("cost by tier")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _page(body: str, title: str = "Plan report") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} section {{ border-top: 1px solid #ccc; }}</style>
</head><body>
{body}
</body></html>
"""


def _write(tmp_path: Path, html: str, name: str = "report.html") -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "screenshot is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_good_page_renders_clean(browser: None, tmp_path: Path) -> None:
    body = f"""
<h1>Capacity plan   for <em>demo</em></h1>
<section id="summary"><h2>Summary</h2><p>Total cost: 12.5 $/h.</p></section>
<section id="plots"><h2>Plots</h2>
  <img alt="cost" src="data:image/png;base64,{_png_b64()}">
</section>
<section id="details"><h2>Details</h2><table><tr><th>model</th><td>llama</td></tr></table>
  <div style="height: 1800px">long table</div>
</section>
<script>document.getElementById("summary").dataset.ok = "1";</script>
"""
    shot = tmp_path / "shots" / "report.png"
    result = render(_write(tmp_path, _page(body)), screenshot=shot, width=1200)

    assert isinstance(result, RenderResult)
    assert result.console_errors == []
    assert result.failed_resources == []
    assert result.title == "Plan report"
    assert result.section_ids == ["summary", "plots", "details"]
    assert result.headings == ["Capacity plan for demo", "Summary", "Plots", "Details"]
    assert result.page_height > 1800
    assert result.screenshot == shot
    assert shot.stat().st_size > 1000
    width, height = _png_size(shot)
    assert width == 1200
    assert height == result.page_height  # the whole page, not just the first viewport


def test_js_error_is_reported(browser: None, tmp_path: Path) -> None:
    body = '<section id="a"><h2>A</h2></section><script>undefined_function()</script>'
    result = render(_write(tmp_path, _page(body)))

    assert any("undefined_function" in e for e in result.console_errors), result.console_messages
    assert result.section_ids == ["a"]  # the page still rendered


def test_console_error_and_other_levels(browser: None, tmp_path: Path) -> None:
    body = '<script>console.log("note"); console.warn("careful"); console.error("broken table")</script>'
    result = render(_write(tmp_path, _page(body)))

    assert len(result.console_errors) == 1 and "broken table" in result.console_errors[0]
    assert any("note" in m for m in result.console_messages)
    assert any("careful" in m for m in result.console_messages)


def test_external_image_is_an_error_and_fails_fast(browser: None, tmp_path: Path) -> None:
    start = time.monotonic()
    result = render(_write(tmp_path, _page('<img src="https://example.com/x.png">')), timeout_s=10)

    assert any("https://example.com/x.png" in e for e in result.console_errors), result.console_messages
    assert result.failed_resources == ["https://example.com/x.png"]
    assert time.monotonic() - start < 10  # the host resolver refuses at once; nothing waits on the network


def test_missing_local_image_is_an_error(browser: None, tmp_path: Path) -> None:
    result = render(_write(tmp_path, _page('<img src="nowhere.png">')))

    assert any("nowhere.png" in e for e in result.console_errors), result.console_messages


def test_broken_image_without_log_line_is_caught_in_page(browser: None, tmp_path: Path) -> None:
    # Chromium logs nothing for an undecodable data: image; the in-page check still catches it.
    src = "data:image/png;base64,AAAAbroken"
    result = render(_write(tmp_path, _page(f'<img src="{src}">')))

    assert f"failed resource: {src}" in result.console_errors


def test_page_that_never_loads_raises(browser: None, tmp_path: Path) -> None:
    path = _write(tmp_path, _page("<script>while (true) {}</script>"))
    with pytest.raises(RuntimeError, match="did not finish loading"):
        render(path, timeout_s=3)


def test_browser_that_cannot_start_raises(browser: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANNER_CHROMIUM", "/bin/false")
    with pytest.raises(RuntimeError, match="could not start headless Chromium"):
        render(_write(tmp_path, _page("<p>x</p>")))


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        render(tmp_path / "absent.html")


def test_find_chromium_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    driver = tmp_path / "fake-chromedriver"
    driver.write_text("#!/bin/sh\n")
    driver.chmod(0o755)
    monkeypatch.setenv("PLANNER_CHROMIUM", str(fake))
    monkeypatch.setenv("PLANNER_CHROMEDRIVER", str(driver))
    assert find_chromium() == (str(fake), str(driver))

    monkeypatch.setenv("PLANNER_CHROMIUM", str(tmp_path / "nothing-here"))
    assert find_chromium() is None
