"""The web book (`llm-math build --format html`): Markdown to HTML with markdown-it-py, MathJax 3
served from the installed `django-static-mathjax` package (never a CDN), pages from templates."""

from __future__ import annotations

import functools
import html
import importlib.resources
from collections.abc import Sequence
from typing import Any

import jinja2
from markupsafe import Markup

from engine.expr import EngineError
from engine.notes.markup import md_math, prose_md, why_math
from engine.notes.model import Chain, Step
from engine.notes.notation import notation_rows
from engine.notes.render import TEMPLATES, NoteView, _tidy
from engine.printing.latex import latex_name, to_latex

HTML_DEPENDENCIES = 'pip install -e ".[html]"  (markdown-it-py, django-static-mathjax)'
# The MathJax 3 component the book loads: TeX input with every extension (\href), SVG output,
# fonts inside: one file, nothing loaded later.
MATHJAX_FILE = "static/mathjax/es5/tex-svg-full.js"


class HtmlError(EngineError):
    """The web book cannot be made (a missing dependency)."""


# ---------------------------------------------------------------- Markdown to HTML


def _github_math_inline(state: Any, silent: bool) -> bool:
    """GitHub's inline math $`...`$ (a code span between dollars) as one `math_inline` token."""
    pos = state.pos
    if not state.src.startswith("$`", pos):
        return False
    end = state.src.find("`$", pos + 2)
    if end < 0:
        return False
    if not silent:
        token = state.push("math_inline", "", 0)
        token.content = state.src[pos + 2 : end]
    state.pos = end + 2
    return True


@functools.cache
def markdown_parser() -> Any:
    """markdown-it-py, CommonMark with tables, raw HTML off, GitHub's two math forms as math."""
    try:
        from markdown_it import MarkdownIt
    except ImportError as e:
        raise HtmlError(f"--format html needs markdown-it-py: {HTML_DEPENDENCIES}") from e
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.inline.ruler.before("backticks", "github_math", _github_math_inline)
    fence = md.renderer.rules["fence"]

    def math_inline(self, tokens, idx, options, env) -> str:
        return f'<span class="math inline">\\({html.escape(tokens[idx].content)}\\)</span>'

    def math_fence(self, tokens, idx, options, env) -> str:
        token = tokens[idx]
        if token.info.strip() != "math":
            return fence(tokens, idx, options, env)
        body = html.escape(token.content.rstrip("\n"))
        return f'<div class="math display">\\[\n{body}\n\\]</div>\n'

    md.add_render_rule("math_inline", math_inline)
    md.add_render_rule("fence", math_fence)
    return md


def markdown_html(text: str) -> Markup:
    """The engine's GitHub Markdown as HTML: math in \\( \\) and \\[ \\] for MathJax."""
    return Markup(markdown_parser().render(text))


def markdown_inline_html(text: str) -> Markup:
    """One line of Markdown as HTML without the surrounding paragraph."""
    return Markup(markdown_parser().renderInline(text))


def mathjax_script() -> bytes:
    """MathJax 3 (tex-svg-full.js: \\href needs an extension) from the package (offline)."""
    try:
        root = importlib.resources.files("mathjax")
        return (root / MATHJAX_FILE).read_bytes()
    except (ImportError, OSError) as e:
        raise HtmlError(f"--format html needs MathJax 3: {HTML_DEPENDENCIES}") from e


# ---------------------------------------------------------------- pages


def equation_anchor(number: int) -> str:
    return f"eq-{number}"


def figure_anchor(number: int) -> str:
    return f"fig-{number}"


class HtmlNote:
    """A NoteView for the web: prose through markdown-it-py, links to equations and notes."""

    def __init__(self, view: NoteView):
        self.view = view
        self.name, self.title = view.name, view.title
        self.step_count = view.step_count
        self.summary = self._html(view.note.summary)
        self.sections = [
            self._section(s, sv) for s, sv in zip(view.note.sections, view.sections, strict=True)
        ]
        self.references = [
            {
                "number": k,
                "html": markdown_inline_html(prose_md(r.text, self._xref, self._cite)),
                "url": r.url,
            }
            for k, r in enumerate(view.note.references, start=1)
        ]

    def _xref(self, label: str) -> str:
        v = self.view
        if ":" in label:
            name, number = v._other_note(label)
            return f"[({number})]({name}.html#{equation_anchor(number)})"
        if label in v._numbers:
            number = v._numbers[label]
            return f"[({number})](#{equation_anchor(number)})"
        number = v._figure_numbers[label]
        return f"[Figure {number}](#{figure_anchor(number)})"

    def _url(self, label: str) -> str:
        """Where [[label]] points: an equation here or in another note, or a figure here."""
        v = self.view
        if ":" in label:
            name, number = v._other_note(label)
            return f"{name}.html#{equation_anchor(number)}"
        if label in v._numbers:
            return f"#{equation_anchor(v._numbers[label])}"
        return f"#{figure_anchor(v._figure_numbers[label])}"

    def _xref_in_math(self, label: str) -> str:
        """[[label]] inside the \\text{} of an equation's justification: the \\text is closed,
        the number written as a MathJax \\href link, and the \\text reopened."""
        shown = self.view._xref_plain(label)
        return rf"}}\href{{{self._url(label)}}}{{\text{{{shown}}}}}\text{{"

    def _linked_equation(self, item: Step | Chain, block: dict[str, Any]) -> dict[str, Any]:
        """The equation block with its justifications' references as links (GitHub's shows
        plain numbers: a link inside its math would not work there)."""
        steps = [item] if isinstance(item, Step) else list(item.steps())
        rows = [
            {**row, "why_md": why_math(step.why, self._xref_in_math, self.view._cite_plain, False)}
            for step, row in zip(steps, block["rows"], strict=True)
        ]
        return {**block, "rows": rows, "md": NoteView._equation_md(rows)}

    def _cite(self, key: str) -> str:
        return f"[[{self.view.refs[key]}]](#ref-{self.view.refs[key]})"

    def _html(self, text: str) -> str:
        return markdown_html(prose_md(text, self._xref, self._cite))

    def _section(self, section, laid_out: dict[str, Any]) -> dict[str, Any]:
        blocks = []
        # NoteView lays out one block per item of the section, in order.
        for item, block in zip(section.items, laid_out["blocks"], strict=True):
            kind = block["type"]
            if kind == "prose":
                blocks.append({"type": kind, "html": self._html(item)})
            elif kind == "definition":
                blocks.append({"type": kind, "html": markdown_html(block["md"])})
            elif kind == "equation":
                block = self._linked_equation(item, block)
                rows = [
                    {
                        "number": r["number"],
                        "anchor": equation_anchor(r["number"]),
                        "mark": r["mark"],
                    }
                    for r in block["rows"]
                ]
                blocks.append({"type": kind, "html": markdown_html(block["md"]), "rows": rows})
            else:
                caption = prose_md(item.caption, self._xref, self._cite)
                blocks.append(
                    {
                        "type": kind,
                        "number": block["number"],
                        "anchor": figure_anchor(block["number"]),
                        "svg": block["svg"],
                        "caption": markdown_inline_html(caption),
                    }
                )
        return {"title": laid_out["title"], "blocks": blocks}


def notation(views: Sequence[NoteView]) -> list[dict[str, Any]]:
    """Per note: each declared variable with its type, and each definition, as LaTeX."""
    out = []
    for v in views:
        rows = [
            {"latex": latex_name(name), "what": f"`{kind}`"} for name, kind in v.note.vars.items()
        ]
        rows += [
            {
                "latex": f"{latex_name(name)} \\mathrel{{:=}} {to_latex(d.body)}",
                "what": "definition",
            }
            for name, d in v.env.defs.items()
        ]
        for row in rows:
            row["html"] = markdown_inline_html(md_math(row["latex"]))
            row["what_html"] = markdown_inline_html(row["what"])
        out.append({"name": v.name, "title": v.title, "rows": rows})
    return out


def book_notation() -> dict[str, list[dict[str, Any]]]:
    """The book's notation section (engine/notes/notation.py) as HTML rows."""
    return {
        group: [
            {
                "html": markdown_inline_html(md_math(row["latex"])),
                "meaning_html": markdown_inline_html(row["md"]),
            }
            for row in rows
        ]
        for group, rows in notation_rows().items()
    }


@functools.cache
def environment() -> jinja2.Environment:
    """Jinja2 for the HTML templates: autoescaped, prose passed in as Markup."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=True,
    )


def render_book(views: Sequence[NoteView], title: str) -> dict[str, bytes]:
    """Every page of the web book, the stylesheet and MathJax, as {path under html/: bytes}."""
    notes = [HtmlNote(v) for v in views]
    files: dict[str, bytes] = {
        "mathjax/tex-svg-full.js": mathjax_script(),
        "style.css": (TEMPLATES / "book.css").read_bytes(),
    }
    pages = [{"href": f"{n.name}.html", "title": n.title} for n in notes]
    notation_page = {"href": "notation.html", "title": "Notation"}
    common = {"book_title": title, "pages": pages, "book_notation": book_notation()}
    files["index.html"] = _page("index.html.j2", title=title, notes=notes, **common)
    for k, n in enumerate(notes):
        files[f"{n.name}.html"] = _page(
            "note.html.j2",
            title=n.title,
            note=n,
            prev=pages[k - 1] if k > 0 else {"href": "index.html", "title": "Contents"},
            next=pages[k + 1] if k + 1 < len(pages) else notation_page,
            **common,
        )
    files["notation.html"] = _page(
        "notation.html.j2",
        title="Notation",
        notes=notation(views),
        prev=pages[-1] if pages else None,
        next=None,
        **common,
    )
    return files


def _page(template: str, **context: Any) -> bytes:
    return _tidy(environment().get_template(template).render(**context)).encode()
