"""Self-contained HTML pages: escaped text, tables and embedded PNG figures, no network.

Every report babysit writes (run report, tuning results, lab pages) is a `Page`:
sections of paragraphs, tables and figures, rendered to one HTML file with the
images inlined as base64 data URIs, so it opens anywhere, offline. Every string
that comes from a user (run names, class names, config values) is escaped.

    page = Page("run mnist1d-convnet")
    sec = page.section("Curves")
    sec.figure(fig, caption="train vs val loss")
    sec.table(["epoch", "val acc"], [[1, 0.52], [2, 0.71]])
    page.write("runs/x/report.html")
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babysit.io import atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#f3f3f3}figure{margin:1em 0}figcaption{color:#555;font-size:90%}
img{max-width:100%}.note{color:#555}
.sev-error{color:#b00020;font-weight:bold}.sev-warning{color:#a15c00;font-weight:bold}.sev-info{color:#1f5fa8}
.sev-pass{color:#2e7d32;font-weight:bold}.sev-warn{color:#a15c00;font-weight:bold}.sev-fail{color:#b00020;font-weight:bold}
.card{border:1px solid #ddd;border-left:6px solid #888;border-radius:4px;padding:.5em 1em;margin:.8em 0;background:#fcfcfc}
.card h3{margin:.2em 0 .5em;font-size:1.05em}.card dl{display:grid;grid-template-columns:max-content 1fr;gap:.25em 1em;margin:0}
.card dt{color:#666}.card dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:3px;padding:0 .45em;margin-right:.5em;color:#fff;background:#888;font-size:85%;text-transform:uppercase}
.card.error{border-left-color:#b00020}.badge.error{background:#b00020}.card.warning{border-left-color:#e69500}.badge.warning{background:#c77800}
.card.info{border-left-color:#1f5fa8}.badge.info{background:#1f5fa8}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
"""


def figure_data_uri(fig: Any, dpi: int = 100) -> str:
    """Render a matplotlib figure to a PNG data URI (and close it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(str(value))


@dataclass
class Section:
    """A titled part of a page; parts render in the order they were added."""

    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, text: str, css_class: str = "") -> Section:
        """A paragraph of plain text (escaped)."""
        cls = f' class="{html.escape(css_class)}"' if css_class else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        row_classes: Sequence[str] | None = None,
        cell_classes: Sequence[Sequence[str]] | None = None,
    ) -> Section:
        """A table; every cell is escaped, floats shown with 4 significant digits.

        Args:
            row_classes: a CSS class per row ("" for none).
            cell_classes: a CSS class per cell, rows like `rows` (e.g. "sev-fail" on a status cell).
        """
        head = "".join(f"<th>{_cell(h)}</th>" for h in header)
        body = []
        for i, row in enumerate(rows):
            cls = f' class="{html.escape(row_classes[i])}"' if row_classes and row_classes[i] else ""
            classes = cell_classes[i] if cell_classes else [""] * len(row)
            cells = "".join((f'<td class="{html.escape(k)}">' if k else "<td>") + f"{_cell(c)}</td>" for c, k in zip(row, classes))
            body.append(f"<tr{cls}>{cells}</tr>")
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        return self

    def figure(self, fig: Any, caption: str = "") -> Section:
        """A matplotlib figure embedded as PNG, with an optional caption."""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img alt="{html.escape(caption)}" src="{figure_data_uri(fig)}">{cap}</figure>')
        return self

    def card(self, title: str, fields: Sequence[tuple[str, str]], tag: str = "") -> Section:
        """A boxed item (one finding): a title with an optional tag badge, then labelled fields; all escaped.

        Args:
            title: the heading line.
            fields: (label, text) pairs shown as a two-column list.
            tag: a short word shown as a badge and used as the box's CSS class ("error", "warning", "info" are styled).
        """
        cls = html.escape(tag)
        badge = f'<span class="badge {cls}">{cls}</span>' if tag else ""
        rows = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value)}</dd>" for label, value in fields)
        self.parts.append(f'<div class="card {cls}"><h3>{badge}{html.escape(title)}</h3><dl>{rows}</dl></div>')
        return self

    def code(self, text: str) -> Section:
        """Preformatted text (config files, commands), escaped."""
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def render(self) -> str:
        return f"<section><h2>{html.escape(self.title)}</h2>{''.join(self.parts)}</section>"


@dataclass
class Page:
    """One self-contained HTML document made of sections."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Append and return a new section."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        body = "".join(s.render() for s in self.sections)
        title = html.escape(self.title)
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>{body}</body></html>\n"
        )

    def fragment(self) -> str:
        """The page as one <div> for a Jupyter cell (`_repr_html_`): the same sections and inline images, its
        styles scoped to that <div>, so the notebook's own look is left alone."""
        body = "".join(s.render() for s in self.sections)
        return f'<div class="{FRAGMENT}"><style>{scoped_css(_CSS, FRAGMENT)}</style><h1>{html.escape(self.title)}</h1>{body}</div>'

    def write(self, path: str | Path) -> Path:
        """Write the page atomically; returns the path."""
        return atomic_write_text(path, self.render())


FRAGMENT = "babysit-report"  # the CSS class of a page shown inside a notebook


def scoped_css(css: str, root: str) -> str:
    """`css` with every rule limited to elements inside `.root` (`body` becomes `.root` itself).

    >>> scoped_css("body{margin:0}h1,td{color:red}", "x")
    '.x{margin:0}.x h1,.x td{color:red}'
    """

    def scope(selector: str) -> str:
        return f".{root}" if selector == "body" else f".{root} {selector}"

    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", css)
    return "".join(",".join(scope(sel.strip()) for sel in selectors.split(",")) + "{" + body + "}" for selectors, body in rules)
