"""Prose markup of the notes: a Markdown subset with $math$, converted for GitHub and LaTeX."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable

# Inline tokens, tried in this order at each position.
_TOKEN = re.compile(
    r"(?P<math>(?<!\\)\$(?!\$)(?:\\\$|[^$])+?\$)"
    r"|(?P<code>`[^`]+`)"
    r"|(?P<xref>\[\[(?:[a-z0-9-]+:)?[a-z0-9-]+\]\])"
    r"|(?P<cite>\[@[^\]]+\])"
    r"|(?P<link>\[[^\]]+\]\([^)\s]+\))"
    r"|(?P<bold>\*\*.+?\*\*)"
    r"|(?P<em>(?<![\w*])\*(?!\s).+?(?<!\s)\*(?![\w*]))"
)

# Characters outside ASCII that pdflatex with T1/utf8 cannot take as text, and what to write.
UNICODE_TEX = {
    "—": "---",
    "–": "--",
    "’": "'",
    "‘": "`",
    "“": "``",
    "”": "''",
    "…": r"\ldots{}",
    "✓": r"\checkmark{}",
    "≈": r"$\approx$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "×": r"$\times$",
    "→": r"$\to$",
    "⇔": r"$\Leftrightarrow$",
    "∈": r"$\in$",
    "·": r"$\cdot$",
    "−": "-",
    "\u00a0": "~",
}
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "$": r"\$",
    # OT1 text fonts have no < > |: they print as ¡ ¿ — (a check detail "sizes >= 4" read "¿= 4")
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


class MarkupError(ValueError):
    """Prose that the LaTeX converter cannot represent."""


def tex_escape(text: str) -> str:
    """Plain text to LaTeX text mode."""
    out = []
    for ch in text:
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ch in UNICODE_TEX:
            out.append(UNICODE_TEX[ch])
        elif ord(ch) > 255:
            raise MarkupError(f"character {ch!r} (U+{ord(ch):04X}) has no LaTeX form; use math")
        else:
            out.append(ch)
    return "".join(out)


Resolver = Callable[[str], str]


def tex_inline(text: str, xref: Resolver, cite: Resolver, textstyle: bool = False) -> str:
    """One line or paragraph of prose to LaTeX (math kept as written, or in \\textstyle)."""
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(_text(text[pos : m.start()]))
        tok, kind = m.group(0), m.lastgroup
        if kind == "math":
            out.append(r"$\textstyle " + tok[1:] if textstyle else tok)
        elif kind == "code":
            out.append(r"\texttt{" + tex_escape(tok[1:-1]) + "}")
        elif kind == "xref":
            out.append(xref(tok[2:-2]))
        elif kind == "cite":
            out.append(cite(tok[2:-1]))
        elif kind == "link":
            label, url = re.fullmatch(r"\[([^\]]+)\]\(([^)\s]+)\)", tok).groups()
            url_tex = url.replace("\\", "").replace("%", r"\%").replace("#", r"\#")
            out.append(rf"\href{{{url_tex}}}{{{tex_inline(label, xref, cite)}}}")
        elif kind == "bold":
            out.append(r"\textbf{" + tex_inline(tok[2:-2], xref, cite) + "}")
        else:
            out.append(r"\emph{" + tex_inline(tok[1:-1], xref, cite) + "}")
        pos = m.end()
    out.append(_text(text[pos:]))
    return "".join(out)


def _text(text: str) -> str:
    """Plain prose to LaTeX, with "double quotes" as ``typographic'' quotes."""
    parts = text.split('"')
    if len(parts) % 2 == 0:
        raise MarkupError(f"unbalanced double quote in {text!r}")
    quoted = (f"``{tex_escape(p)}''" if k % 2 else tex_escape(p) for k, p in enumerate(parts))
    return "".join(quoted)


# What Markdown must not touch (math, code) and what the Markdown writer resolves.
_MD_TOKEN = re.compile(
    r"(?P<math>(?<!\\)\$(?!\$)(?:\\\$|[^$])+?\$)"
    r"|(?P<code>`[^`]+`)"
    r"|(?P<xref>\[\[(?:[a-z0-9-]+:)?[a-z0-9-]+\]\])"
    r"|(?P<cite>\[@[^\]]+\])"
    r"|(?P<link>\[[^\]]+\]\([^)\s]+\))"
)
# TeX-style dashes of the sources, as GitHub (which has no smart punctuation) should show them.
_MD_DASHES = (("---", "—"), ("--", "–"))


def md_math(latex: str) -> str:
    """Inline math for GitHub: $`...`$, a code span, so Markdown never parses the LaTeX."""
    body = latex.strip()
    if "`" in body or not body:
        raise MarkupError(f"inline math {latex!r} is empty or holds a backtick")
    return f"$`{body}`$"


def md_display(latex: str) -> str:
    """Display math for GitHub: a fenced `math` block, taken literally by Markdown."""
    lines = [ln.rstrip() for ln in latex.strip("\n").split("\n")]
    if any(ln.lstrip().startswith(("```", "~~~")) for ln in lines):
        raise MarkupError(f"display math holds a code fence: {latex!r}")
    return "```math\n" + "\n".join(lines) + "\n```"


def md_inline(text: str, xref: Resolver, cite: Resolver) -> str:
    """Prose for GitHub Markdown: $math$ becomes $`math`$; references and citations resolve."""
    out, pos = [], 0
    for m in _MD_TOKEN.finditer(text):
        out.append(_md_text(text[pos : m.start()]))
        tok, kind = m.group(0), m.lastgroup
        if kind == "math":
            out.append(md_math(tok[1:-1]))
        elif kind in ("code", "link"):
            out.append(tok)
        elif kind == "xref":
            out.append(xref(tok[2:-2]))
        else:
            out.append(cite(tok[2:-1]))
        pos = m.end()
    out.append(_md_text(text[pos:]))
    return "".join(out)


def _md_text(text: str) -> str:
    for tex, char in _MD_DASHES:
        text = text.replace(tex, char)
    return text


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split prose into ('para' | 'ul' | 'ol' | 'math', lines) blocks."""
    blocks: list[tuple[str, list[str]]] = []
    lines = [ln.rstrip() for ln in _dedent(text).split("\n")]
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.strip().startswith("$$"):
            body = [line.strip()[2:]]
            if body[0].endswith("$$") and len(line.strip()) > 2:
                body = [body[0][:-2]]
                i += 1
            else:
                i += 1
                while i < len(lines) and not lines[i].strip().endswith("$$"):
                    body.append(lines[i])
                    i += 1
                if i < len(lines):
                    body.append(lines[i].strip()[:-2])
                i += 1
            blocks.append(("math", [b for b in body if b.strip()]))
            continue
        kind = "ul" if re.match(r"^\s*- ", line) else "ol" if re.match(r"^\s*\d+\. ", line) else ""
        if kind:
            items: list[str] = []
            while i < len(lines) and lines[i].strip():
                m = re.match(r"^\s*(?:- |\d+\. )(.*)$", lines[i])
                if m:
                    items.append(m.group(1))
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            blocks.append((kind, items))
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith("$$"):
            para.append(lines[i].strip())
            i += 1
        blocks.append(("para", [" ".join(para)]))
    return blocks


def _dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def prose_md(text: str, xref: Resolver, cite: Resolver) -> str:
    """Prose to GitHub Markdown, one blank line between blocks."""
    out = []
    for kind, lines in _blocks(text):
        if kind == "math":
            out.append(md_display("\n".join(ln.strip() for ln in lines)))
        elif kind == "ul":
            out.append("\n".join(f"- {md_inline(x, xref, cite)}" for x in lines))
        elif kind == "ol":
            out.append(
                "\n".join(f"{k}. {md_inline(x, xref, cite)}" for k, x in enumerate(lines, 1))
            )
        else:
            out.append(md_inline(lines[0], xref, cite))
    return "\n\n".join(out)


def prose_tex(text: str, xref: Resolver, cite: Resolver) -> str:
    """Prose to LaTeX paragraphs, lists and unnumbered displays."""
    out = []
    for kind, lines in _blocks(text):
        if kind == "math":
            out.append("\\[\n" + "\n".join(ln.strip() for ln in lines) + "\n\\]")
        elif kind in ("ul", "ol"):
            env = "itemize" if kind == "ul" else "enumerate"
            items = "\n".join(r"  \item " + tex_inline(x, xref, cite) for x in lines)
            out.append(f"\\begin{{{env}}}\n{items}\n\\end{{{env}}}")
        else:
            out.append(tex_inline(lines[0], xref, cite))
    return "\n\n".join(out)


def why_math(why: str, xref: Resolver, cite: Resolver, tex: bool) -> str:
    """A justification as math-mode material for the right-hand column of a display.

    LaTeX: the whole line in \\text{} (its $math$ is then inline-sized). Markdown (MathJax
    has no math inside \\text): text parts in \\text{}, math parts in \\textstyle.
    """
    if not why:
        return ""
    if tex:
        return r"\text{" + tex_inline(why, xref, cite, textstyle=True) + "}"
    parts = re.split(r"(?<!\\)\$", why)
    out = []
    for k, part in enumerate(parts):
        if not part:
            continue
        if k % 2:
            out.append(r"{\textstyle " + part + "}")
        else:
            out.append(r"\text{" + md_inline(part, xref, cite) + "}")
    return " ".join(out)
