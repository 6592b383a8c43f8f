"""What the sample upload accepts: passive types checked by content, a size cap, a generated
name and, where media live on a disk of ours, a free-space floor above the health check's.

Nginx serves ``/media/`` from the site's origin; an uploaded HTML or SVG file would be stored
XSS there. The floor exists because a full shared media disk fails every worker's health at
once; it applies only where media are a directory (the local stack). With a bucket (prod, lab)
no disk of ours grows with uploads: the bucket has no free-space figure to keep a floor on,
a worker only spools an upload (at most Nginx's 50 MB body, 10 MB accepted) in its private
/tmp, and what bounds growth is the size cap and Nginx's per-client upload rate (10 a minute).
Pure functions: the view does the I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MB = 2**20
MAX_UPLOAD_BYTES = 10 * MB
# Free space kept beyond the health check's floors: uploads are refused this far above them.
FLOOR_MARGIN_MB = 512.0
FLOOR_MARGIN_PERCENT = 2.0

# Passive types only, each recognised by its first bytes (text: valid UTF-8 without markup).
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".webp": (b"RIFF",),
}
TEXT_EXTENSION = ".txt"


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def check_content(name: str, head: bytes, size: int) -> Refusal | None:
    """None when a file called ``name`` starting with ``head`` (its first KiB) of ``size``
    bytes is acceptable, else why not."""
    if size > MAX_UPLOAD_BYTES:
        return Refusal(413, f"larger than {MAX_UPLOAD_BYTES // MB} MB")
    ext = extension(name)
    if ext == TEXT_EXTENSION:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as err:
            # A multi-byte character cut at the end of the head is still text.
            if err.start < len(head) - 3:
                return Refusal(415, "not UTF-8 text")
            text = head[: err.start].decode("utf-8")
        if "<" in text:
            return Refusal(415, "text with markup")
        return None
    signatures = SIGNATURES.get(ext)
    if signatures is None:
        return Refusal(415, f"type {ext or '(none)'} not accepted")
    if not head.startswith(signatures) or (ext == ".webp" and head[8:12] != b"WEBP"):
        return Refusal(415, f"content is not {ext}")
    return None


def check_free_space(free: int, total: int, size: int, health: Mapping[str, Any]) -> Refusal | None:
    """Refuse when storing ``size`` bytes would leave less than the health floors plus a
    margin, so the disk check (and with it every worker) never fails from uploads."""
    floor_mb = float(health["min_disk_free_mb"]) + FLOOR_MARGIN_MB
    floor_pct = float(health["min_disk_free_percent"]) + FLOOR_MARGIN_PERCENT
    left = free - size
    if left < floor_mb * MB or (total and 100.0 * left / total < floor_pct):
        return Refusal(507, "the media disk is near its free-space floor")
    return None


def stored_name(name: str) -> str:
    """A generated name keeping only the (accepted) extension: no user-chosen path or name."""
    return f"{uuid.uuid4().hex}{extension(name)}"
