"""MkDocs hook: the API pages show docstrings written with Sphinx roles
(``:func:`name```, ``:class:`~pkg.mod.Name```) as plain code (``name``, ``Name``), not
with the role's name in front."""

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")
SHORT = re.compile(r"<code>~([\w.]+)</code>")  # Sphinx's ~: the last part of the path only


def on_page_content(html: str, **_) -> str:
    return SHORT.sub(lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1]}</code>", ROLE.sub("", html))
