"""The book (``make book``): built from the committed reproductions, opened in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them with apt-get where
it can; see the README). Screenshots of every page, at 1366x768 and at phone width, are written to
``runs/book-screenshots/`` (not committed) for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from prefkit.book import build, latex_to_mathml, ledger_html, math_in_markdown, notebook_html

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "runs" / "book-screenshots"
CHROMIUM = os.environ.get("PREFKIT_CHROMIUM") or shutil.which("chromium")  # e.g. a Chrome elsewhere on macOS
CHROMEDRIVER = os.environ.get("PREFKIT_CHROMEDRIVER") or shutil.which("chromedriver")


def test_math_becomes_mathml_and_code_is_left_alone():
    out = math_in_markdown("loss $-\\log\\sigma(x)$ and `$HOME` and\n\n$$a^2 + b^2$$\n\nprice: 5$ or $ 6")
    assert out.count("<math") == 2 and 'display="block"' in out and "`$HOME`" in out
    assert "5$ or $ 6" in out  # a lone dollar with spaces is not math
    assert "<math" not in math_in_markdown("```\n$x$\n```")
    assert latex_to_mathml("x^", display=False) == '<code class="tex">x^</code>'  # kept as code, not lost


def test_claims_get_anchors_and_the_ledger_links_them(tmp_path):
    nb = ROOT / "reproductions" / "diffusion" / "13_diffusion.ipynb"
    body = notebook_html(nb)
    result = json.loads((nb.parent / "result.json").read_text())
    for c in result["claims"]:
        assert f'id="claim-{c["id"]}"' in body, c["id"]
    ledger = ledger_html([("13_diffusion.html", result, "2-D")])
    assert ledger.count('href="13_diffusion.html#claim-') == len(result["claims"])
    assert 'href="13_diffusion.html#claim-M1"' in ledger


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "_site"
    build(out, ROOT / "reproductions", ROOT / "README.md", ROOT / "prefkit" / "losses")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))

    class Quiet(handler.func):
        def log_message(self, *args):  # no request log in the test output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_the_site_has_every_page(site):
    out, _ = site
    notebooks = sorted(p.stem for p in ROOT.glob("reproductions/*/[0-9][0-9]_*.ipynb"))
    assert notebooks and all((out / f"{n}.html").is_file() for n in notebooks)
    losses = sorted(p.stem for p in (ROOT / "prefkit" / "losses").glob("*.py"))
    assert all((out / f"losses-{m}.html").is_file() for m in losses)
    assert "two commands" in (out / "index.html").read_text().lower()
    for rj in ROOT.glob("reproductions/*/result.json"):  # every claim of every notebook has its anchor
        nb = next(rj.parent.glob("[0-9][0-9]_*.ipynb")).stem
        body = (out / f"{nb}.html").read_text()
        missing = [c["id"] for c in json.loads(rj.read_text())["claims"] if f'id="claim-{c["id"]}"' not in body]
        assert not missing, f"{nb}: no anchor for {missing}"
    pages = {p.name for p in out.glob("*.html")}
    for page in pages:  # every link between pages lands on a page of the site
        for href in set(re.findall(r'href="([^"#:]+\.html)', (out / page).read_text())):
            assert href in pages, f"{page} links to missing {href}"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("the book's browser test needs Debian's chromium and chromium-driver on PATH "
                    "(apt-get install chromium chromium-driver; `make test` does this where it can)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,768"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # no driver download: the system's
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _open(driver, url: str) -> list[dict]:
    driver.get(url)
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


FIGURES = "return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.naturalWidth])"
MATH = """return Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().height)"""


@pytest.mark.parametrize("width, height, tag", [(1366, 768, "desktop"), (390, 844, "phone")])
def test_pages_load_clean_with_figures_and_math(site, browser, width, height, tag):
    _, base = site
    browser.set_window_size(width, height)
    for page in ("index.html", "ledger.html", "13_diffusion.html"):
        errors = _open(browser, base + page)
        assert not errors, f"{page}: console says {errors}"
        browser.save_screenshot(str(SHOTS / f"{tag}-{page.removesuffix('.html')}.png"))
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 1, f"{page} scrolls sideways by {wide} px at {width} px"
    figures = browser.execute_script(FIGURES)  # the notebook page is the last one opened
    assert len(figures) >= 6 and all(ok for ok, _ in figures), figures  # every figure decoded
    heights = browser.execute_script(MATH)
    assert len(heights) >= 10 and all(h > 0 for h in heights), "math is not laid out"
    assert "$$" not in browser.find_element("css selector", "main").text  # no equation left as raw LaTeX


def test_a_ledger_link_lands_on_its_claim(site, browser):
    _, base = site
    browser.set_window_size(1366, 768)
    _open(browser, base + "ledger.html")
    link = browser.find_element("css selector", 'a[href="13_diffusion.html#claim-M1"]')
    browser.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    assert browser.execute_script("return location.pathname.endsWith('13_diffusion.html') && location.hash") == (
        "#claim-M1"
    )
    top = browser.execute_script("return document.getElementById('claim-M1').getBoundingClientRect().top")
    assert 0 <= top < 768, f"the claim's line is not in view (top {top})"
    assert "M1" in browser.find_element("id", "claim-M1").text
    browser.save_screenshot(str(SHOTS / "desktop-claim-M1.png"))


def test_search_finds_a_page(site, browser):
    _, base = site
    browser.set_window_size(1366, 768)
    _open(browser, base + "index.html")
    browser.find_element("id", "search").send_keys("mapo")
    hits = [a.get_attribute("href") for a in browser.find_elements("css selector", "#hits a")]
    assert any(h.endswith("13_diffusion.html") for h in hits), hits
