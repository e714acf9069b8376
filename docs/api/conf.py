"""Sphinx configuration of the chipctl API reference (``sphinx-build -W -b html docs/api OUT``).

The pages are plain ``automodule`` directives over the three import packages; the docstrings
are Google style (``Args:``, ``Returns:``, ``Raises:``, ``Attributes:``), read by napoleon.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

project = "chipctl"
author = "chipctl developers"
copyright = "chipctl developers"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# ``Attributes:`` sections become :ivar: fields, so dataclass fields that autodoc also
# documents do not appear twice (duplicate object descriptions are warnings).
napoleon_use_ivar = True

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_member_order = "bysource"

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

# Inherited docstrings (Textual's Widget.compose, Screen.render ...) are Markdown, not RST.
autodoc_inherit_docstrings = False


# -- plain-text math in docstrings --------------------------------------------------------------
#
# The code's docstrings write maths as plain text: |x| is an absolute value or a norm, and
# (N, *shape) a star-unpacked shape. In reStructuredText "|x|" is a substitution reference and
# "*x" opens emphasis, so both are escaped before docutils sees them. Literal blocks (after "::"),
# doctest lines and ``inline literals`` are left alone; *emphasis* that is closed on the same line
# and **strong** text keep working.

_LITERAL = re.compile(r"(``.+?``)")
_BAR = re.compile(r"(?<!\\)\|")
_STAR_START = re.compile(r"(?<![\\*\w])\*(?=[^\s*])")


def _escape_stars(text: str) -> str:
    """Escape every ``*`` that opens emphasis which the next ``*`` on the line does not close."""
    lone: list[int] = []
    for match in _STAR_START.finditer(text):
        i = match.start()
        j = text.find("*", i + 1)
        closes = (
            j > 0
            and not text[j - 1].isspace()
            and (j + 1 == len(text) or not text[j + 1].isalnum())
        )
        if not closes:
            lone.append(i)
    for i in reversed(lone):
        text = text[:i] + "\\" + text[i:]
    return text


def _escape_text(text: str) -> str:
    parts = _LITERAL.split(text)
    for k in range(0, len(parts), 2):  # even parts are outside ``literals``
        parts[k] = _escape_stars(_BAR.sub(r"\\|", parts[k]))
    return "".join(parts)


def escape_plain_math(lines: list[str]) -> list[str]:
    """Escape ``|`` and unclosed ``*`` outside literal blocks, doctests and inline literals."""
    out: list[str] = []
    literal_indent: int | None = None  # indent of the paragraph that opened a literal block
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        if stripped.startswith(">>>") or stripped.startswith("..."):
            out.append(line)
            continue
        out.append(_escape_text(line))
        if stripped.endswith("::"):
            literal_indent = indent
    return out


def _process_docstring(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    lines[:] = escape_plain_math(lines)


def setup(app: Any) -> dict[str, Any]:
    """Register the docstring pre-processor."""
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"parallel_read_safe": True}
