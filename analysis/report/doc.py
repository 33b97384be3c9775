"""The report's document: headings, paragraphs, tables and figures, rendered to Markdown and
to one self-contained HTML page alike."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

# wide tables scroll inside their box; figures sit two per row on a wide screen, one below
# 1000 px
CSS = """body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;
color:#222}.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;white-space:nowrap}th{background:#f2f2f2}
table.wrap{width:100%}table.wrap td,table.wrap th{white-space:normal;overflow-wrap:break-word}
img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
.figures{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1em 2em;
margin:1em 0 2em}figure{margin:0}
@media (max-width:1000px){.figures{grid-template-columns:minmax(0,1fr)}}
code{background:#f5f5f5;padding:0 .2em}"""


class Bold(str):
    """A table cell shown in bold."""


class Doc:
    """Headings, paragraphs, tables and figures, rendered to Markdown and HTML alike."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md += [text, ""]
        body = html.escape(text)
        body = re.sub(r"`([^`]+)`", r"<code>\1</code>", body)
        self.html.append(f"<p>{body}</p>")

    def table(self, header: list[str], rows: list[list], wrap: bool = False) -> None:
        """A table; ``wrap``: its cells wrap (long text) instead of scrolling sideways."""
        def md(c) -> str:
            return f"**{c}**" if isinstance(c, Bold) else str(c)

        def ht(c) -> str:
            return f"<b>{html.escape(c)}</b>" if isinstance(c, Bold) else html.escape(str(c))

        self.md += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.md += ["| " + " | ".join(md(c) for c in r) + " |" for r in rows] + [""]
        opening = '<table class="wrap">' if wrap else "<table>"
        self.html.append(f'<div class="scroll">{opening}<thead><tr>'
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                         + "</tr></thead><tbody>"
                         + "".join("<tr>" + "".join(f"<td>{ht(c)}</td>" for c in r) + "</tr>"
                                   for r in rows) + "</tbody></table></div>")

    def figure(self, png: Path, caption: str) -> None:
        rel = png.relative_to(self.root).as_posix()
        self.md += [f"![{caption}]({rel})", "", f"*{caption}* (also `{rel[:-4]}.svg`)", ""]
        data = base64.b64encode(png.read_bytes()).decode()
        item = (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        grid = '<div class="figures">'
        if self.html and self.html[-1].startswith(grid):  # consecutive figures share a grid
            self.html[-1] = self.html[-1][:-len("</div>")] + item + "</div>"
        else:
            self.html.append(f"{grid}{item}</div>")

    def render_html(self, title: str) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(self.html) + "\n</body></html>\n")
