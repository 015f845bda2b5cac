"""A small document model for the report, rendered to Markdown and to one self-contained HTML page.

A report is a list of blocks (:class:`Heading`, :class:`Paragraph`, :class:`Bullets`,
:class:`Table`, :class:`Figure`). :func:`to_markdown` writes them as GitHub Markdown with the
figures linked by relative path; :func:`to_html` writes one HTML page that needs nothing else:
the CSS sits in a ``<style>`` element, every figure is an ``<img>`` with a base64 ``data:`` PNG,
there is no script, and a Content-Security-Policy forbids any network fetch. Every piece of
text (including names read from the data, such as target names) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# Images only from data: URLs, styles only inline, nothing else: the page cannot reach a network.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# Neutral colours on purpose: the only saturated pixels on the page come from the figures.
STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1e1e1e;
       background: #ffffff; margin: 0; line-height: 1.45; }
main { max-width: 1150px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.8em; border-bottom: 2px solid #444; padding-bottom: 0.2em; }
h2 { font-size: 1.4em; border-bottom: 1px solid #bbb; margin-top: 2em; }
h3 { font-size: 1.15em; margin-top: 1.5em; }
h4 { font-size: 1em; margin-bottom: 0.3em; }
nav ul { columns: 2; }
a { color: #333; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
th, td { border: 1px solid #c8c8c8; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #eeeeee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0 1.5em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
p.note { font-size: 0.9em; color: #555; }
table.findings { font-size: 0.78em; }
table.findings td { padding: 0.15em 0.4em; }
table.findings td.num { white-space: normal; min-width: 5.5em; }
p.answer { margin: 0.4em 0; }
li { margin-bottom: 0.35em; }
"""
# A number, an interval "[a, b]", a number with an interval, or one of those with a remark in brackets.
_NUMERIC = re.compile(r"^[<>]?\s*[-+\[]?\s*\d[\d.eE+\-\[\], ]*(\(.*\))?$")


@dataclass(frozen=True)
class Heading:
    """A section heading; level 1 is the page title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text; ``note`` paragraphs are set smaller (caveats, provenance)."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of plain-text cells with a header row and a caption."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    css: str = ""  # an HTML class (``findings``: the compact findings table)


@dataclass(frozen=True)
class Figure:
    """A PNG figure on disk (embedded in the HTML, linked from the Markdown)."""

    path: Path
    caption: str


def table_from_frame(frame: pd.DataFrame, *, caption: str = "", digits: int = 4) -> Table:
    """A :class:`Table` of ``frame``'s cells as text (floats to ``digits`` significant digits, NaN empty)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.{digits}g}"
        return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)

    rows = tuple(tuple(cell(v) for v in record) for record in frame.itertuples(index=False, name=None))
    return Table(header=tuple(str(c) for c in frame.columns), rows=rows, caption=caption)


def slug(text: str) -> str:
    """An HTML id from a heading's text."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


# -- Markdown --------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    numeric = _numeric_columns(table)
    lines.append("| " + " | ".join(_md_cell(h) for h in table.header) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines


def to_markdown(blocks: list, *, relative_to: Path) -> str:
    """The blocks as Markdown; figure paths are written relative to ``relative_to``."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text.replace("\n", " ")]
        elif isinstance(block, Paragraph):
            lines += [f"*{block.text}*" if block.note else block.text]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items]
        elif isinstance(block, Table):
            lines += _md_table(block)
        elif isinstance(block, Figure):
            target = Path(block.path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
            lines += [f"![{_md_cell(block.caption)}]({target})", "", f"*{block.caption}*"]
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
        lines.append("")
    return "\n".join(lines)


# -- HTML ------------------------------------------------------------------------------------


def _numeric_columns(table: Table) -> list[bool]:
    """Columns whose non-empty cells all look like numbers (or numbers with an interval)."""
    columns = list(zip(*table.rows)) if table.rows else [()] * len(table.header)
    return [bool([c for c in col if c]) and all(_NUMERIC.match(c) for c in col if c) for col in columns]


def _html_table(table: Table) -> str:
    esc = html.escape
    numeric = _numeric_columns(table)
    parts = [f'<table class="{esc(table.css)}">' if table.css else "<table>"]
    if table.caption:
        parts.append(f"<caption>{esc(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in table.header) + "</tr></thead>")
    parts.append("<tbody>")
    for row in table.rows:
        cells = "".join(f'<td class="num">{esc(c)}</td>' if numeric[i] else f"<td>{esc(c)}</td>"
                        for i, c in enumerate(row))
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(Path(figure.path).read_bytes()).decode("ascii")
    caption = html.escape(figure.caption)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _html_block(block, ids: dict) -> str:
    esc = html.escape
    if isinstance(block, Heading):
        return f'<h{block.level} id="{ids[id(block)]}">{esc(block.text)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f'<p class="note">{esc(block.text)}</p>' if block.note else f"<p>{esc(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        return _html_figure(block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def _heading_ids(blocks: list) -> dict:
    ids, seen = {}, set()
    for block in blocks:
        if isinstance(block, Heading):
            base, k = slug(block.text), 1
            name = base
            while name in seen:
                k += 1
                name = f"{base}-{k}"
            seen.add(name)
            ids[id(block)] = name
    return ids


def _contents_at(blocks: list) -> int:
    """Where the table of contents goes: before the first section heading after the first table (the
    answer and the findings table come first), else right under the title."""
    first_table = next((i for i, b in enumerate(blocks) if isinstance(b, Table)), None)
    if first_table is None:
        return 1
    return next((i for i, b in enumerate(blocks) if i > first_table and isinstance(b, Heading) and b.level == 2),
                len(blocks))


def to_html(blocks: list, *, title: str) -> str:
    """The blocks as one self-contained HTML page (module docstring), with a table of contents after the
    findings (:func:`_contents_at`)."""
    ids = _heading_ids(blocks)
    sections = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    toc = "".join(f'<li><a href="#{ids[id(b)]}">{html.escape(b.text)}</a></li>' for b in sections)
    body, at = [], _contents_at(blocks)
    for i, block in enumerate(blocks):
        if i == at and toc:
            body.append(f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>")
        body.append(_html_block(block, ids))
    if at >= len(blocks) and toc:
        body.append(f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
