"""MkDocs hook: the API pages show docstrings written with Sphinx roles
(``:func:`name```) as plain code (``name``), not with the role's name in front."""

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, **_) -> str:
    return ROLE.sub("", html)
