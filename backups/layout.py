"""Names: backup stamps and the keys of a backup set's files, the same in every store.

A set is ``db/<stamp>/{dump,globals,manifest}.enc``; the manifest is written last, so a set
without one is an interrupted run, never a backup. Media objects are content-addressed under
``media/objects/`` and each set has a media index at ``media/index/<stamp>.enc``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DB_PREFIX = "db/"
MEDIA_OBJECTS = "media/objects/"
MEDIA_INDEX = "media/index/"
FILES = ("dump", "globals", "manifest")


def stamp_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)


def set_key(stamp: str, file: str) -> str:
    return f"{DB_PREFIX}{stamp}/{file}.enc"


def media_index_key(stamp: str) -> str:
    return f"{MEDIA_INDEX}{stamp}.enc"


def media_object_key(name: str) -> str:
    return f"{MEDIA_OBJECTS}{name}"


def media_object_name(master: bytes, sha256: str) -> str:
    """An object's name from its content hash, keyed so the bucket does not reveal hashes of
    known files."""
    return hmac.new(master, f"media-object/{sha256}".encode(), hashlib.sha256).hexdigest()


def sets_in(keys: Iterable[str]) -> tuple[set[str], set[str]]:
    """(complete stamps, every stamp) among ``db/`` keys."""
    complete, seen = set(), set()
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "db":
            continue
        try:
            parse_stamp(parts[1])
        except ValueError:
            continue
        seen.add(parts[1])
        if parts[2] == "manifest.enc":
            complete.add(parts[1])
    return complete, seen


def choose(stamps: Iterable[str], wanted: str) -> str | None:
    """``latest``, an exact stamp, or a date (YYYY-MM-DD: the newest backup of that day)."""
    ordered = sorted(stamps)
    if not ordered:
        return None
    if wanted == "latest":
        return ordered[-1]
    if wanted in ordered:
        return wanted
    day = wanted.replace("-", "")
    if len(day) == 8 and day.isdigit():
        same_day = [s for s in ordered if s.startswith(day)]
        return same_day[-1] if same_day else None
    return None
