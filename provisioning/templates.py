"""Loading the real template files under ``cloud-init/`` and filling them from settings.

Placeholders are ``@{name}``: nginx, shell and systemd all use ``$``, so ``string.Template``'s
default delimiter would collide with them. A missing value is an error, never an empty string.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent / "cloud-init"


_PLACEHOLDER = r"""
    @(?:
      (?P<escaped>(?!))                |
      (?P<named>(?!))                  |
      \{(?P<braced>[a-z_][a-z0-9_]*)\} |
      (?P<invalid>(?!))
    )
"""


class FileTemplate(Template):
    """``@{name}`` placeholders only; everything else is literal text."""

    delimiter = "@"
    # Template compiles this string itself (with re.VERBOSE); typeshed types it as a Pattern.
    pattern = _PLACEHOLDER  # type: ignore[assignment]


def template_text(relative: str) -> str:
    """The raw text of ``cloud-init/<relative>``."""
    return (TEMPLATE_ROOT / relative).read_text()


def render(relative: str, **values: object) -> str:
    """``cloud-init/<relative>`` with each ``@{name}`` filled; KeyError if one is missing."""
    return FileTemplate(template_text(relative)).substitute({k: str(v) for k, v in values.items()})

