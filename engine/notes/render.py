"""Renders checked notes through the Jinja2 templates: Markdown for GitHub, LaTeX notes and book."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import sympy

from engine.notes.markup import md_display, prose_md, prose_tex, tex_escape, why_math
from engine.notes.model import Chain, Definition, Figure, Note, Step
from engine.notes.notation import notation_rows
from engine.notes.symbols import sympy_latex
from engine.parser import Environment, parse_formula
from engine.printing.latex import latex_name, to_latex
from engine.verify import Result

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


@dataclass(frozen=True)
class FigureFiles:
    """Where a figure's files go, relative to the Markdown and the LaTeX directories."""

    svg: str
    pdf: str


def _side_latex(side: Any, env: Environment, sizes: frozenset[str] = frozenset()) -> str:
    if isinstance(side, str):
        return to_latex(parse_formula(side, env))
    if isinstance(side, sympy.Basic):
        return sympy_latex(side, sizes)
    raise ValueError("a step given as a function needs display= (LaTeX) to be shown")


def _array_sizes(note: Note) -> frozenset[str]:
    names = set()
    for text in note.arrays.values():
        names.update(re.findall(r"[A-Za-z_]\w*", text.partition("[")[2]))
    return frozenset(names)


def mark(result: Result) -> str:
    """The verification mark of a passing step, from the verifier's checks."""
    return "; ".join(c.detail for c in result.checks)


def _tex_float(x: float) -> str:
    """1.94e-11 as $1.9 \\cdot 10^{-11}$; 0 as $0$."""
    if x == 0:
        return "$0$"
    mantissa, exponent = f"{x:.1e}".split("e")
    return rf"${mantissa} \cdot 10^{{{int(exponent)}}}$"


def short_mark_tex(result: Result) -> str:
    """A one-line PDF mark: the routes that passed and the largest numeric error.

    The verifier's full account (sizes, scales, probes) goes to the details list instead.
    """
    routes = " and ".join(dict.fromkeys(c.method for c in result.checks))
    errors = [c.max_error for c in result.checks if c.method == "numeric"]
    if errors:
        routes += r", max.\ rel.\ error " + _tex_float(max(errors))
    return routes


def cite_key(ref) -> str:
    """A citation key from the reference's content: one entry per work in the whole book."""
    digest = hashlib.sha1(f"{ref.text}\0{ref.url or ''}".encode()).hexdigest()[:8]
    return f"{ref.key}:{digest}"


def equation_numbers(note: Note) -> dict[str, int]:
    """The number of each labelled step of a note, counted as the note shows them."""
    numbers, number = {}, 0
    for step in note.steps():
        number += 1
        if step.label:
            numbers[step.label] = number
    return numbers


class NoteView:
    """A note laid out for the templates: numbered equations, resolved references."""

    def __init__(
        self,
        note: Note,
        env: Environment,
        results: Sequence[Result],
        figures: Mapping[str, FigureFiles],
        catalog: Mapping[str, Note] | None = None,
    ):
        self.note = note
        self.catalog = catalog or {}
        self.env = env
        self.name = note.name
        self.title = note.title
        self.sizes = frozenset(env.sizes) | frozenset(note.indices.values()) | _array_sizes(note)
        self._results = list(results)
        self._numbers: dict[str, int] = {}
        self._figure_numbers: dict[str, int] = {}
        self._number_everything()
        self.refs = {r.key: k for k, r in enumerate(note.references, start=1)}
        self._cite_keys = {r.key: cite_key(r) for r in note.references}
        self.figure_files = figures
        self.summary_md = self._md(note.summary)
        self.summary_tex = self._tex(note.summary)
        self.title_tex = tex_escape(note.title)
        self.sections = [self._section(s) for s in note.sections]
        self.references = [
            {
                "number": k,
                "key": r.key,
                "cite_key": self._cite_keys[r.key],
                "md": self._md(r.text) + (f" <{r.url}>" if r.url else ""),
                "tex": self._tex(r.text),
                "url": r.url.replace("%", r"\%").replace("#", r"\#") if r.url else None,
            }
            for k, r in enumerate(note.references, start=1)
        ]
        self.step_count = len(results)
        self.numbered()

    # numbering and references
    def _number_everything(self) -> None:
        self._numbers = equation_numbers(self.note)
        for section in self.note.sections:
            for item in section.items:
                if isinstance(item, Figure):
                    k = len(self._figure_numbers) + 1
                    self._figure_numbers[item.label or f"figure-{item.name}"] = k

    def tex_label(self, label: str, kind: str = "eq", note: str | None = None) -> str:
        return f"{kind}:{note or self.name}:{label}"

    def _other_note(self, ref: str) -> tuple[str, int]:
        """`note:label` of another note's equation: (note name, its number in that note)."""
        name, _, label = ref.partition(":")
        if name not in self.catalog:
            raise ValueError(f"{self.name}: [[{ref}]]: there is no note named {name!r}")
        numbers = equation_numbers(self.catalog[name])
        if label not in numbers:
            raise ValueError(
                f"{self.name}: [[{ref}]]: note {name!r} has no step labelled {label!r}"
            )
        return name, numbers[label]

    def _xref_md(self, label: str) -> str:
        if ":" in label:
            name, number = self._other_note(label)
            return f"[({number})]({name}.md)"
        return self._xref_plain(label)

    def _xref_plain(self, label: str) -> str:
        if ":" in label:
            return f"({self._other_note(label)[1]})"
        if label in self._numbers:
            return f"({self._numbers[label]})"
        return f"Figure {self._figure_numbers[label]}"

    def _xref_tex(self, label: str) -> str:
        if ":" in label:  # \eqref in the book, the other note's own number in a lone note
            name, number = self._other_note(label)
            return (
                rf"\noteref{{{self.tex_label(label.partition(':')[2], note=name)}}}{{({number})}}"
            )
        if label in self._numbers:
            return rf"\eqref{{{self.tex_label(label)}}}"
        return rf"Figure~\ref{{{self.tex_label(label, 'fig')}}}"

    def _cite_md(self, key: str) -> str:
        return f"[{self.refs[key]}](#references)"

    def _cite_plain(self, key: str) -> str:
        return f"[{self.refs[key]}]"

    def _cite_tex(self, key: str) -> str:
        return rf"\cite{{{self._cite_keys[key]}}}"

    def _md(self, text: str) -> str:
        return prose_md(text, self._xref_md, self._cite_md)

    def _tex(self, text: str) -> str:
        return prose_tex(text, self._xref_tex, self._cite_tex)

    def _why(self, why: str) -> dict[str, str]:
        return {
            # inside display math a Markdown link would show as text: plain [k]
            "why_md": why_math(why, self._xref_plain, self._cite_plain, tex=False),
            "why_tex": why_math(why, self._xref_tex, self._cite_tex, tex=True),
        }

    # blocks
    def _section(self, section) -> dict[str, Any]:
        blocks = []
        for item in section.items:
            if isinstance(item, str):
                blocks.append({"type": "prose", "md": self._md(item), "tex": self._tex(item)})
            elif isinstance(item, Definition):
                blocks.append(self._definition(item))
            elif isinstance(item, Step):
                blocks.append(self._equation([item], first_lhs=True))
            elif isinstance(item, Chain):
                blocks.append(self._equation(list(item.steps()), first_lhs=False))
            elif isinstance(item, Figure):
                blocks.append(self._figure(item))
            else:
                raise TypeError(f"unknown item in section {section.title!r}: {item!r}")
        return {"title": section.title, "title_tex": tex_escape(section.title), "blocks": blocks}

    def _definition(self, d: Definition) -> dict[str, Any]:
        if isinstance(d.lhs, str) and d.rhs is None:
            if d.lhs not in self.env.defs:
                raise ValueError(f"Definition({d.lhs!r}): no such definition in Note.defs")
            lhs, rhs = latex_name(d.lhs), to_latex(self.env.defs[d.lhs].body)
        else:
            lhs, rhs = (
                _side_latex(d.lhs, self.env, self.sizes),
                _side_latex(d.rhs, self.env, self.sizes),
            )
        why = self._why(d.why)
        md = rf"{lhs} \mathrel{{:=}} {rhs}" + (rf" \qquad {why['why_md']}" if d.why else "")
        return {"type": "definition", "lhs": lhs, "rhs": rhs, "md": md_display(md), **why}

    def _equation(self, steps: list[Step], first_lhs: bool) -> dict[str, Any]:
        rows = []
        for k, step in enumerate(steps):
            result = self._results.pop(0)
            lhs, rhs = step.sides()
            if step.display is not None:
                left, rel, right = step.display, "", ""
            else:
                left = _side_latex(lhs, self.env, self.sizes) if (k == 0 or first_lhs) else ""
                rel, right = "=", _side_latex(rhs, self.env, self.sizes)
            rows.append(
                {
                    "lhs": left,
                    "rel": rel,
                    "rhs": right,
                    "label": step.label,
                    "result": result,
                    "mark": mark(result),
                    **self._why(step.why),
                }
            )
        return {"type": "equation", "rows": rows}

    @staticmethod
    def _equation_md(rows: list[dict[str, Any]]) -> str:
        """An equation block as one GitHub `math` fence: aligned rows, why, number."""
        lines = [
            f"{r['lhs']} &{r['rel']} {r['rhs']} && {r['why_md']} && ({r['number']})"
            + (r" \\" if k < len(rows) - 1 else "")
            for k, r in enumerate(rows)
        ]
        return md_display("\\begin{aligned}\n" + "\n".join(lines) + "\n\\end{aligned}")

    def _figure(self, f: Figure) -> dict[str, Any]:
        label = f.label or f"figure-{f.name}"
        files = self.figure_files[f.name]
        return {
            "type": "figure",
            "number": self._figure_numbers[label],
            "label": self.tex_label(label, "fig"),
            "svg": files.svg,
            "pdf": files.pdf,
            "caption_md": self._md(f.caption),
            "caption_tex": self._tex(f.caption),
        }

    def numbered(self) -> None:
        """Give every equation row its number and a LaTeX label (after all blocks exist)."""
        number = 0
        for section in self.sections:
            for block in section["blocks"]:
                if block["type"] != "equation":
                    continue
                for row in block["rows"]:
                    number += 1
                    row["number"] = number
                    row["tex_label"] = self.tex_label(row["label"] or f"{number}")
                    row["mark_tex"] = tex_escape(row["mark"])
                    row["short_mark_tex"] = short_mark_tex(row["result"])
                    row["detail_label"] = "check:" + row["tex_label"]
                block["md"] = self._equation_md(block["rows"])


@functools.cache
def environment() -> tuple[jinja2.Environment, jinja2.Environment]:
    """Jinja2 environments, made once: Markdown ({{ }}), and LaTeX (<< >>, <% %>, <# #>)."""
    common = dict(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    md = jinja2.Environment(**common)
    tex = jinja2.Environment(
        **common,
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<<",
        variable_end_string=">>",
        comment_start_string="<#",
        comment_end_string="#>",
    )
    return md, tex


def render_note_md(view: NoteView) -> str:
    md, _ = environment()
    return _tidy(md.get_template("note.md.j2").render(note=view))


def render_note_tex(view: NoteView) -> str:
    _, tex = environment()
    return _tidy(tex.get_template("note.tex.j2").render(note=view, standalone=True))


def render_book_tex(views: Sequence[NoteView], title: str) -> str:
    _, tex = environment()
    references = list({r["cite_key"]: r for v in views for r in v.references}.values())
    return _tidy(
        tex.get_template("book.tex.j2").render(
            notes=views, title=title, references=references, notation=notation_rows()
        )
    )


def render_index_md(views: Sequence[NoteView], paths: Mapping[str, str]) -> str:
    md, _ = environment()
    return _tidy(
        md.get_template("index.md.j2").render(notes=views, paths=paths, notation=notation_rows())
    )


def _tidy(text: str) -> str:
    """No trailing spaces (except none are meaningful), at most one blank line, final newline."""
    lines = [ln.rstrip() for ln in text.split("\n")]
    out: list[str] = []
    for ln in lines:
        if ln == "" and out and out[-1] == "":
            continue
        out.append(ln)
    return "\n".join(out).strip("\n") + "\n"
