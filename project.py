"""Where this checkout is: the root every layer resolves the project's own files from.

A leaf module (it imports nothing of the project), so the lowest layer may use it without
reaching up into the engine.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent
