"""Markdown and self-contained HTML from one list of sections.

The HTML needs nothing but itself: figures are inlined as base64 `data:` URIs, the style is an
inline `<style>` block, and there are no scripts and no external links for assets. Markdown links
its figures as the PNG files written beside it. All text is escaped here, never upstream.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import polars as pl

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; }
figcaption { font-size: .9rem; color: #555; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; font-size: .85rem; }
.caption { color: #555; font-size: .92rem; }
"""


@dataclass(frozen=True)
class Figure:
    """A PNG figure: `name` is its file stem (`<name>.png` beside the report)."""

    name: str
    title: str
    caption: str
    png: bytes

    @property
    def file(self) -> str:
        return f"{self.name}.png"


@dataclass(frozen=True)
class Section:
    """One heading and its content, shown in this order: text, figures, table, items, code."""

    title: str
    text: str = ""  # a paragraph
    figures: tuple[Figure, ...] = ()
    table: pl.DataFrame | None = None  # every column shown as text
    items: tuple[str, ...] = ()  # a bullet list
    code: str = ""  # a preformatted block (YAML, JSON)
    level: int = 2  # heading level (2 or 3)
    children: tuple["Section", ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- Markdown


def _md_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(frame: pl.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes and backslashes escaped)."""
    head = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([head, rule, *body])


def _md_section(sec: Section) -> list[str]:
    out = ["#" * sec.level + " " + sec.title, ""]
    if sec.text:
        out += [sec.text, ""]
    for fig in sec.figures:
        out += [f"![{fig.title}]({fig.file})", "", f"*{fig.caption}*", ""]
    if sec.table is not None:
        out += [md_table(sec.table), ""]
    if sec.items:
        out += [f"- {_md_cell(item)}" for item in sec.items] + [""]
    if sec.code:
        out += ["```yaml", sec.code.rstrip("\n"), "```", ""]
    for child in sec.children:
        out += _md_section(child)
    return out


def markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown; figures are linked as `<name>.png` beside it."""
    lines = [f"# {title}", ""]
    for sec in sections:
        lines += _md_section(sec)
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- HTML


def data_uri(png: bytes) -> str:
    """A `data:image/png;base64,...` URI holding the PNG itself."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>\n" for row in frame.iter_rows()
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"


def _html_figure(fig: Figure) -> str:
    return (f'<figure id="{html.escape(fig.name)}"><img src="{data_uri(fig.png)}" '
            f'alt="{html.escape(fig.title)}">\n'
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")


def _html_section(sec: Section) -> list[str]:
    tag = f"h{sec.level}"
    out = [f"<section>\n<{tag}>{html.escape(sec.title)}</{tag}>"]
    if sec.text:
        out.append(f'<p class="caption">{html.escape(sec.text)}</p>')
    out += [_html_figure(fig) for fig in sec.figures]
    if sec.table is not None:
        out.append(html_table(sec.table))
    if sec.items:
        out.append("<ul>\n" + "".join(f"<li>{html.escape(i)}</li>\n" for i in sec.items)
                   + "</ul>")
    if sec.code:
        out.append(f"<details><summary>show</summary><pre>{html.escape(sec.code)}</pre>"
                   "</details>")
    for child in sec.children:
        out += _html_section(child)
    out.append("</section>")
    return out


def html_page(title: str, sections: list[Section]) -> str:
    """One self-contained HTML5 page (figures inline, inline CSS, no scripts)."""
    body = [line for sec in sections for line in _html_section(sec)]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        *body,
        "</body>",
        "</html>",
    ]) + "\n"
