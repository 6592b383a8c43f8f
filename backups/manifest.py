"""The manifest written with every backup: what was dumped, and how to check a restore.

Per table the row count and content checksum (taken in the dump's own snapshot), per file its
plain and encrypted size and SHA-256. ``compare_tables`` is the check a restore must pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    key: str
    size: int
    sha256: str
    plain_size: int
    plain_sha256: str


@dataclass(frozen=True)
class TableEntry:
    rows: int
    checksum: str


@dataclass(frozen=True)
class Manifest:
    stamp: str
    database: str
    created: str
    tables: dict[str, TableEntry]
    files: dict[str, FileEntry]
    toc_entries: int
    media_index: str | None = None
    media_files: int = 0
    media_bytes: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    version: int = VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data: dict[str, Any] = json.loads(raw)
        if data.get("version") != VERSION:
            raise ValueError(f"manifest version {data.get('version')} is not {VERSION}")
        data["tables"] = {k: TableEntry(**v) for k, v in data["tables"].items()}
        data["files"] = {k: FileEntry(**v) for k, v in data["files"].items()}
        return cls(**data)


def compare_tables(
    expected: dict[str, TableEntry], actual: dict[str, tuple[int, str]]
) -> list[str]:
    """Every difference between the manifest's tables and a restored database's, readable."""
    problems = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            problems.append(f"{name}: missing from the restored database")
        elif name not in expected:
            problems.append(f"{name}: not in the backup's manifest")
        else:
            want, (rows, checksum) = expected[name], actual[name]
            if rows != want.rows:
                problems.append(f"{name}: {rows} rows, the backup had {want.rows}")
            elif checksum != want.checksum:
                problems.append(f"{name}: content checksum differs from the backup's")
    return problems
