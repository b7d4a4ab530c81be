"""Render report sections as one HTML page and its Markdown twin, with the figures as PNG files beside them."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

from cnnrepro import atomic
from cnnrepro.report.build import Figure, Section

STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #eee; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3rem; }
figure { margin: 1rem 0; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _html_table(table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    return f"<table><caption>{html.escape(table.caption)}</caption><tr>{head}</tr>{body}</table>"


def _html_figure(figure: Figure) -> str:
    name = html.escape(figure.file)
    caption = html.escape(figure.caption)
    return f'<figure><img src="{name}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def to_html(title: str, sections: list[Section], extra_figures: list[Figure], footer: str) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_figure(f) for f in section.figures]
    if extra_figures:
        parts.append("<h2>Training curves</h2>")
        parts += [_html_figure(f) for f in extra_figures]
    parts.append(f"<hr><p>{html.escape(footer)}</p></body></html>\n")
    return "\n".join(parts)


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], extra_figures: list[Figure], footer: str) -> str:
    lines = [f"# {title}", ""]

    def figure(f: Figure) -> None:
        lines.extend([f"![{f.caption}]({f.file})", "", f"*{f.caption}*", ""])

    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for table in section.tables:
            if table.caption:
                lines += [f"*{table.caption}*", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
            lines.append("|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.rows]
            lines.append("")
        for f in section.figures:
            figure(f)
    if extra_figures:
        lines += ["## Training curves", ""]
        for f in extra_figures:
            figure(f)
    lines += ["---", "", footer, ""]
    return "\n".join(lines)


def write(out: Path, title: str, sections: list[Section], extra_figures: list[Figure], footer: str) -> None:
    """Write index.html, report.md and the figures into the folder `out` (which must exist)."""
    for section in sections:
        for figure in section.figures:
            if figure.source is not None:
                shutil.copyfile(figure.source, out / figure.file)
    atomic.write_text(out / "index.html", to_html(title, sections, extra_figures, footer))
    atomic.write_text(out / "report.md", to_markdown(title, sections, extra_figures, footer))
