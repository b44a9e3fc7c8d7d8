"""Render a self-contained HTML report in headless Chromium and report what a person would see.

:func:`render` opens a local HTML file (a ``file://`` URL) in Debian's Chromium driven by its
ChromeDriver through Selenium 4, and returns a :class:`RenderResult`: the browser console at every
level, the errors among it, the ``<title>``, the ids of every ``<section>``, the text of every
``h1``/``h2`` and, if asked, a full-page PNG screenshot.

The browser runs offline: besides the usual headless flags it is started with
``--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost`` and ``--no-proxy-server``, so any
fetch of a network asset fails at once (``net::ERR_NAME_NOT_RESOLVED``) instead of waiting on the
closed network. ChromeDriver is given explicitly to Selenium's ``Service``, so Selenium Manager is
never run and nothing is downloaded (``SE_OFFLINE=true`` is set as well, for good measure).

What counts as a console error (:attr:`RenderResult.console_errors`):

* every browser log entry at level ``SEVERE``: ``console.error`` calls, uncaught JavaScript
  exceptions (``Uncaught ReferenceError: ...``) and resources that failed to load
  (``Failed to load resource: net::ERR_...``), as Chromium logs them;
* and, as a second net independent of the log, every ``<img>`` that finished without pixels
  (``naturalWidth == 0``) and every ``<link rel=stylesheet>`` without a stylesheet, found by a
  script run in the page after load, added as ``"failed resource: URL"`` unless the log already
  names that URL. An external asset or a missing file is therefore caught either way.

Finding the browser: :func:`find_chromium` looks at ``$PLANNER_CHROMIUM`` / ``$PLANNER_CHROMEDRIVER``
first, then ``PATH``, then ``/usr/bin``. On Debian: ``apt-get install chromium chromium-driver``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.fileio import write_atomic_bytes

__all__ = ["MAX_SCREENSHOT_HEIGHT", "RenderResult", "find_chromium", "render"]

MAX_SCREENSHOT_HEIGHT = 20000
"""A full-page screenshot is cut at this many CSS pixels."""

_INITIAL_HEIGHT = 900
_CHROMIUM_NAMES = ("chromium", "chromium-browser")
_CHROMEDRIVER_NAMES = ("chromedriver",)

_CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-quic",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
)

# Run in the page after load: what it shows, and the assets that failed without a log line.
_COLLECT_JS = """
const norm = (s) => (s || "").replace(/\\s+/g, " ").trim();
const failed = [];
for (const img of document.images) {
  const src = img.currentSrc || img.src;
  if (src && img.complete && img.naturalWidth === 0) failed.push(src);
}
for (const link of document.querySelectorAll('link[rel~="stylesheet"][href]')) {
  if (!link.sheet) failed.push(link.href);
}
return {
  title: document.title,
  sections: Array.from(document.querySelectorAll("section[id]"), (s) => s.id),
  headings: Array.from(document.querySelectorAll("h1, h2"), (h) => norm(h.textContent)),
  failed: failed,
};
"""

_PAGE_HEIGHT_JS = """
const d = document.documentElement, b = document.body;
return Math.ceil(Math.max(d.scrollHeight, d.offsetHeight, b ? b.scrollHeight : 0, b ? b.offsetHeight : 0));
"""


@dataclass
class RenderResult:
    """What :func:`render` saw in the browser."""

    console_errors: list[str]
    """Browser log entries at level SEVERE, plus ``"failed resource: URL"`` for assets found broken in the page."""
    console_messages: list[str]
    """Every browser log entry, as ``"LEVEL: message"``, in order."""
    title: str
    section_ids: list[str]
    """The ``id`` of every ``<section>`` element that has one, in document order."""
    headings: list[str]
    """The text of every ``h1`` and ``h2``, whitespace collapsed, in document order."""
    screenshot: Path | None
    page_height: int
    """The document's scroll height in CSS pixels (the screenshot may be cut at :data:`MAX_SCREENSHOT_HEIGHT`)."""
    failed_resources: list[str] = field(default_factory=list)
    """URLs of images and stylesheets that the in-page check found broken (also in ``console_errors``)."""


def _resolve(override_var: str, names: tuple[str, ...]) -> str | None:
    override = os.environ.get(override_var)
    if override:
        # An override that names nothing runnable means "no browser", not a fall back to another one.
        return shutil.which(override)
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin")
        if found:
            return found
    return None


def find_chromium() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` executables, or ``None`` when either is missing.

    ``$PLANNER_CHROMIUM`` and ``$PLANNER_CHROMEDRIVER`` (a path or a command name) take precedence;
    otherwise ``chromium`` / ``chromium-browser`` and ``chromedriver`` are looked up on ``PATH`` and
    then in ``/usr/bin``.
    """
    chromium = _resolve("PLANNER_CHROMIUM", _CHROMIUM_NAMES)
    chromedriver = _resolve("PLANNER_CHROMEDRIVER", _CHROMEDRIVER_NAMES)
    if chromium is None or chromedriver is None:
        return None
    return chromium, chromedriver


def _format_entry(entry: dict[str, Any]) -> str:
    return f"{entry.get('level', '?')}: {entry.get('message', '')}"


def render(html_path: Path, screenshot: Path | None = None, width: int = 1400, timeout_s: float = 30) -> RenderResult:
    """Open ``html_path`` in headless Chromium, offline, and collect what the page shows.

    With ``screenshot`` given, the window is made as tall as the document (at most
    :data:`MAX_SCREENSHOT_HEIGHT` px) and ``width`` px wide, and a full-page PNG is written there.
    ``timeout_s`` bounds the page load and every script run in it.

    Raises :class:`FileNotFoundError` if the file does not exist, and :class:`RuntimeError` if
    Chromium or ChromeDriver cannot be found or started, the page does not load in time, or the
    browser crashes. The browser is always shut down.
    """
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"no HTML file to render: {html_path}")
    found = find_chromium()
    if found is None:
        raise RuntimeError(
            "headless Chromium not found: install Debian's 'chromium' and 'chromium-driver' "
            "or set PLANNER_CHROMIUM and PLANNER_CHROMEDRIVER"
        )
    chromium, chromedriver = found
    try:
        from selenium import webdriver
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - selenium is in the dev extra
        raise RuntimeError("rendering needs selenium: pip install -e '.[dev]'") from exc

    # The driver path is given explicitly, so Selenium Manager is skipped; this only makes sure that,
    # should it ever run, it does not try the network.
    os.environ.setdefault("SE_OFFLINE", "true")

    with tempfile.TemporaryDirectory(prefix="planner-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in _CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={width},{_INITIAL_HEIGHT}")
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.page_load_strategy = "normal"
        # ChromeDriver in its own session, so that Chromium (its children) can be killed with it.
        service = Service(
            executable_path=chromedriver, log_output=subprocess.DEVNULL, popen_kw={"start_new_session": True}
        )

        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            raise RuntimeError(f"could not start headless Chromium ({chromium} via {chromedriver}): {exc.msg}") from exc
        try:
            driver.set_page_load_timeout(timeout_s)
            driver.set_script_timeout(timeout_s)
            driver.get(html_path.as_uri())
            page: dict[str, Any] = driver.execute_script(_COLLECT_JS)
            page_height = int(driver.execute_script(_PAGE_HEIGHT_JS) or 0)

            shot: Path | None = None
            if screenshot is not None:
                shot = Path(screenshot)
                _full_page_screenshot(driver, shot, width, page_height)

            entries = driver.get_log("browser")
        except TimeoutException as exc:
            # A page that never settles times out in get() or, when ChromeDriver gives up on the
            # renderer first (a loaded machine), in the first script after it: the same verdict.
            raise RuntimeError(f"{html_path} did not finish loading within {timeout_s:g} s") from exc
        except WebDriverException as exc:
            raise RuntimeError(f"headless Chromium failed while rendering {html_path}: {exc.msg}") from exc
        finally:
            _shutdown(driver, service)

    console_messages = [_format_entry(e) for e in entries]
    console_errors = [_format_entry(e) for e in entries if e.get("level") == "SEVERE"]
    failed_resources = list(dict.fromkeys(page.get("failed") or []))
    for url in failed_resources:
        if not any(url in message for message in console_errors):
            console_errors.append(f"failed resource: {url}")
    return RenderResult(
        console_errors=console_errors,
        console_messages=console_messages,
        title=str(page.get("title") or ""),
        section_ids=[str(s) for s in page.get("sections") or []],
        headings=[str(h) for h in page.get("headings") or []],
        screenshot=shot,
        page_height=page_height,
        failed_resources=failed_resources,
    )


QUIT_GRACE_S = 10.0  # how long a browser may take to close before it is killed


def _shutdown(driver: Any, service: Any, grace_s: float = QUIT_GRACE_S) -> None:
    """Quit the browser; when it does not answer within ``grace_s``, kill ChromeDriver's process
    group (Chromium with it). A page spinning in a script keeps ChromeDriver from closing its tab:
    ``quit()`` then blocks on HTTP read timeouts (120 s, retried: 10 minutes under load) and would
    leave a renderer burning a core for the rest of the run."""

    def quit_() -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone after a crash
            driver.quit()

    t = threading.Thread(target=quit_, daemon=True)
    t.start()
    t.join(grace_s)
    proc = getattr(service, "process", None)
    if proc is not None and (t.is_alive() or proc.poll() is None):
        with contextlib.suppress(Exception):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def _full_page_screenshot(driver: Any, path: Path, width: int, page_height: int) -> None:
    """Make the viewport ``width`` x the page height (capped) and save a PNG of it."""
    height = max(1, min(page_height, MAX_SCREENSHOT_HEIGHT))
    driver.set_window_size(width, height)
    # The window may be larger than its viewport (browser chrome): grow it by the difference once.
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    dw, dh = width - int(inner[0]), height - int(inner[1])
    if dw or dh:
        driver.set_window_size(width + dw, height + dh)
    # Taken into memory and written atomically: a failed or interrupted run keeps an older PNG.
    png = driver.get_screenshot_as_png()
    if not png:
        raise RuntimeError(f"could not take the screenshot for {path}")
    write_atomic_bytes(path, png)
