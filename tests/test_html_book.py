"""The web book in a real browser (Selenium driving headless Chromium): every page typesets all its
formulas with MathJax 3 without an error, every internal link resolves, every page fits a phone;
and every formula of the GitHub pages (as cmark-gfm delivers it) renders in MathJax 3.

Screenshots of every page go to build/screenshots/ (or $LLM_MATH_SCREENSHOTS)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_markdown_github import formulas

from engine.notes.build import OUTPUT, ROOT, BuildError, build, load_notes
from engine.notes.html import markdown_html
from engine.notes.markup import md_display, md_math
from engine.notes.output import LOCAL_MANIFEST, MANIFEST, read_manifest

CHROMIUM = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = (CHROMIUM is None or CHROMEDRIVER is None) and not os.environ.get("CI")
pytestmark = pytest.mark.skipif(
    NO_BROWSER, reason="chromium/chromium-driver not installed (this test always runs in CI)"
)

NOTES = [x.note.name for x in load_notes()]
PAGES = ["index.html", *(f"{n}.html" for n in NOTES), "notation.html"]
SCREENSHOTS = Path(os.environ.get("LLM_MATH_SCREENSHOTS") or ROOT / "build" / "screenshots")

# Resolves once MathJax has typeset the page: the number of formulas and the TeX errors.
TYPESET = """
const done = arguments[arguments.length - 1];
(function wait() {
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return setTimeout(wait, 25);
  MathJax.startup.promise.then(() => done({
    formulas: document.querySelectorAll("mjx-container").length,
    errors: [...document.querySelectorAll("[data-mjx-error]")].map(e => e.dataset.mjxError),
    text: document.body.innerText,
    // HTML links and MathJax's SVG links (\\href in a formula) alike, as absolute URLs.
    links: [...document.querySelectorAll("a")].map(a => a.getAttribute("href"))
      .filter(Boolean).map(h => new URL(h, location.href).href),
    math_links: document.querySelectorAll("mjx-container a").length,
    images: [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0]),
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  }), e => done({failed: String(e)}));
})();
"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1000,1400")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    report = build(formats=("html",), out=out)
    assert report.failures == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return out / "html"


def expected_formulas(page: str) -> int:
    """Formulas of a page, counted in the committed GitHub Markdown it is made from."""
    if page == "index.html":
        markdown = (OUTPUT / "README.md").read_text()
    elif page == "notation.html":
        notes = load_notes()
        return sum(len(x.note.vars) + len(x.note.defs) for x in notes) + _book_notation()
    else:
        markdown = (OUTPUT / "md" / page.replace(".html", ".md")).read_text()
    display, inline = formulas(markdown)
    return len(display) + len(inline)


def _book_notation() -> int:
    """Formulas of the book's notation section (engine/notes/notation.py), on both HTML pages."""
    from engine.notes.notation import notation_rows

    rows = [row for group in notation_rows().values() for row in group]
    display, inline = formulas("\n".join(f"{md_math(r['latex'])} {r['md']}" for r in rows))
    return len(display) + len(inline)


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_typesets_every_formula_and_every_link_resolves(browser, book, page):
    browser.get((book / page).as_uri())
    seen = browser.execute_async_script(TYPESET)
    assert "failed" not in seen, seen
    browser.save_screenshot(str(SCREENSHOTS / f"{page[:-5]}.png"))
    assert seen["errors"] == [], f"MathJax could not typeset: {seen['errors']}"
    assert seen["formulas"] == expected_formulas(page)
    # Nothing left untypeset: no TeX delimiters or commands in the visible text.
    assert not re.search(r"\\[()\[\]]|\\[A-Za-z]{2,}", seen["text"]), seen["text"][:400]
    for src, loaded in seen["images"]:
        assert loaded, f"image {src} did not load"
    internal = [u for u in seen["links"] if u.startswith("file:")]
    assert internal, "a page of the book links nowhere"
    for url in internal:
        parsed = urlparse(url)
        target = Path(unquote(parsed.path))
        assert target.is_file() and target.parent == book, f"{page}: broken link {url}"
        if parsed.fragment:
            assert parsed.fragment in _ids(target), (
                f"{page}: no #{parsed.fragment} in {target.name}"
            )
    assert not [u for u in seen["links"] if not u.startswith(("file:", "http"))]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_fits_a_phone_screen(browser, book, page):
    browser.set_window_size(390, 844)
    try:
        browser.get((book / page).as_uri())
        seen = browser.execute_async_script(TYPESET)
        browser.save_screenshot(str(SCREENSHOTS / f"{page[:-5]}-phone.png"))
    finally:
        browser.set_window_size(1000, 1400)
    assert seen["errors"] == []
    assert seen["overflow"] <= 0, (
        "the page scrolls sideways on a phone (a wide display must scroll alone)"
    )


def test_notes_link_to_each_others_numbered_equations(book):
    """[[note:label]] becomes a link to the equation's anchor on the other note's page; a local
    [[label]] a link to the anchor on the same page; a citation a link to its reference."""
    softmax = (book / "softmax.html").read_text()
    assert re.search(r'href="cross-entropy\.html#eq-\d+"', softmax)
    assert re.search(r'href="#eq-\d+"', softmax) and re.search(r'href="#ref-\d+"', softmax)
    assert 'href="#fig-1"' in (book / "attention.html").read_text()
    # inside an equation's justification, as a MathJax \\href (GitHub's shows plain numbers)
    assert re.search(r"\\href\{#eq-\d+\}\{\\text\{\(\d+\)\}\}", softmax)


def test_links_inside_formulas_are_typeset_as_links(browser, book):
    browser.get((book / "attention.html").as_uri())
    seen = browser.execute_async_script(TYPESET)
    assert seen["errors"] == []
    assert seen["math_links"] == (book / "attention.html").read_text().count("\\href{")


def test_the_web_book_is_built_whole(tmp_path):
    with pytest.raises(BuildError, match="drop --only"):
        build(only=["softmax"], formats=("html",), out=tmp_path)


def test_without_mathjax_installed_the_build_says_what_to_install(tmp_path, monkeypatch):
    import engine.notes.html as web

    monkeypatch.setattr(web, "MATHJAX_FILE", "static/mathjax/es5/no-such-file.js")
    with pytest.raises(BuildError, match=r'needs MathJax 3: pip install -e "\.\[html\]"'):
        build(formats=("html",), out=tmp_path)
    assert not (tmp_path / "html").exists()


def test_the_book_needs_no_network(book):
    """MathJax and every other file come from the book's own directory: no http(s) script,
    stylesheet or image."""
    for page in book.glob("*.html"):
        text = page.read_text()
        assert not re.search(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', text), page
    assert (book / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000


# ---------------------------------------------------------------- GitHub's pages in MathJax 3


@pytest.fixture(scope="module")
def mathjax_page(browser, book, tmp_path_factory) -> None:
    """A blank page with the same MathJax 3 (no formulas of its own), ready to typeset."""
    page = tmp_path_factory.mktemp("mathjax") / "blank.html"
    script = (book / "mathjax" / "tex-svg-full.js").as_uri()
    page.write_text(
        "<!DOCTYPE html><html><head><script>window.MathJax = {tex: {packages: "
        '{"[-]": ["noundefined", "noerrors"]}}, startup: {typeset: false}};</script>'
        f'<script src="{script}"></script></head><body></body></html>'
    )
    browser.get(page.as_uri())
    assert browser.execute_async_script(TYPESET)["formulas"] == 0


# Typesets each formula alone; returns [formula, error] for those MathJax reports as errors.
RENDER_EACH = """
const [items, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const bad = [];
  for (const [tex, display] of items) {
    const node = await MathJax.tex2svgPromise(tex, {display});
    const err = node.querySelector("[data-mjx-error]");
    if (err || !node.querySelector("svg")) bad.push([tex, err ? err.dataset.mjxError : "no svg"]);
  }
  done(bad);
})().catch(e => done([["", String(e)]]));
"""


@pytest.mark.parametrize("page", [*(f"{n}.md" for n in NOTES), "README.md"])
def test_every_github_formula_renders_in_mathjax(browser, mathjax_page, page):
    path = OUTPUT / ("md" if page != "README.md" else "") / page
    display, inline = formulas(path.read_text())
    items = [[f, True] for f in display] + [[f, False] for f in inline]
    assert items
    assert browser.execute_async_script(RENDER_EACH, items) == []


def test_a_formula_that_mathjax_cannot_typeset_is_reported(browser, mathjax_page):
    """The check above can fail: an unknown command and an unbalanced brace are errors."""
    items = [[r"\frac{a}{b}", False], [r"\notacommand x", False], [r"\frac{a}{b", True]]
    bad = browser.execute_async_script(RENDER_EACH, items)
    assert [tex for tex, _ in bad] == [r"\notacommand x", r"\frac{a}{b"]
    assert "notacommand" in bad[0][1]


def test_markdown_to_html_keeps_githubs_math_forms_as_math():
    page = markdown_html("A $`a < b_i`$ and *x*.\n\n```math\n\\|q\\| \\,\\|\\, p\n```\n")
    assert r'<span class="math inline">\(a &lt; b_i\)</span>' in page
    assert "<em>x</em>" in page
    assert '<div class="math display">\\[\n\\|q\\| \\,\\|\\, p\n\\]</div>' in page


# Any inline or display formula the engine writes for GitHub reaches the web page's math intact.
LATEX_CHARS = st.text(alphabet="ab_^*\\{}[]()<>&$|#%~-+=., '\"!`x1", min_size=1, max_size=40)
SPANS = re.compile(r'<span class="math inline">\\\((.*?)\\\)</span>', re.S)
DIVS = re.compile(r'<div class="math display">\\\[\n(.*?)\n\\\]</div>', re.S)


@settings(max_examples=300, deadline=None)
@given(LATEX_CHARS, st.sampled_from(["{m}", "({m})", "**{m}**", "*{m}*", "a{m}b", "- {m}"]))
def test_inline_math_reaches_the_web_page_intact(latex, context):
    assume(latex.strip() and "`" not in latex)
    page = markdown_html(context.replace("{m}", md_math(latex)))
    assert [html.unescape(m) for m in SPANS.findall(page)] == [latex.strip()]


@settings(max_examples=200, deadline=None)
@given(st.lists(LATEX_CHARS, min_size=1, max_size=4))
def test_display_math_reaches_the_web_page_intact(lines):
    assume(all("`" not in ln and "~~~" not in ln for ln in lines))
    latex = "\n".join(ln.rstrip() for ln in lines).strip("\n")
    assume(latex.strip())
    page = markdown_html(f"Before.\n\n{md_display(latex)}\n\nAfter.")
    expected = "\n".join(ln.rstrip() for ln in latex.strip("\n").split("\n"))
    assert [html.unescape(m) for m in DIVS.findall(page)] == [expected]


def test_building_the_web_book_leaves_the_committed_manifest_unchanged(tmp_path):
    """output/html/ is not committed: its files are listed in the git-ignored local manifest,
    so a web-book build next to the committed notes changes none of the committed files."""
    build(formats=("md", "tex"), out=tmp_path)
    committed = (tmp_path / MANIFEST).read_bytes()
    assert not (tmp_path / LOCAL_MANIFEST).exists()
    build(formats=("md", "tex", "html"), out=tmp_path)
    build(formats=("html",), out=tmp_path)  # a rebuild: its own files, so allowed
    assert (tmp_path / MANIFEST).read_bytes() == committed
    local = json.loads((tmp_path / LOCAL_MANIFEST).read_text())["files"]
    assert "html/index.html" in local and all(f.startswith("html/") for f in local)
    assert set(local) <= read_manifest(tmp_path)
    (tmp_path / "html" / "old.html").write_text("stale")
    data = json.loads((tmp_path / LOCAL_MANIFEST).read_text())
    (tmp_path / LOCAL_MANIFEST).write_text(json.dumps({**data, "files": [*local, "html/old.html"]}))
    build(formats=("html",), out=tmp_path)
    assert not (tmp_path / "html" / "old.html").exists()  # listed there, so removed when stale
