"""Pure planning: media sync (what to hash, upload, forget) and set names (what to restore)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backups.layout import choose, media_object_name, sets_in
from backups.media_plan import CachedHash, FileStat, needs_hashing, to_upload, unreferenced


def test_only_new_or_changed_files_are_hashed() -> None:
    files = {"a": FileStat(1, "10"), "b": FileStat(2, "20"), "c": FileStat(3, "30")}
    cache = {
        "a": CachedHash(1, "10", "ha"), "b": CachedHash(2, "21", "hb"),
        "gone": CachedHash(1, "1", "x")
    }
    assert needs_hashing(files, cache) == ["b", "c"]


def test_only_contents_not_stored_are_uploaded_once() -> None:
    index = {"a": "h1", "b": "h2", "copy-of-a": "h1"}
    names = {"h1": "n1", "h2": "n2"}
    assert to_upload(index, existing=["n2"], name_of=names) == {"n1": "a"}
    assert to_upload(index, existing=["n1", "n2"], name_of=names) == {}


def test_deleted_files_stay_while_a_kept_set_refers_to_them() -> None:
    existing = ["n1", "n2", "n3"]
    assert unreferenced(existing, [["n1"], ["n1", "n2"]]) == {"n3"}
    assert unreferenced(existing, []) == set(existing)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.sampled_from("abcdef"), max_size=20),
       st.sets(st.sampled_from("abcdef")))
def test_after_uploading_the_plan_every_index_entry_is_stored(
    index: dict[str, str], existing: set[str]
) -> None:
    names = {h: h.upper() for h in "abcdef"}
    stored = {names[h] for h in existing}
    uploads = to_upload(index, stored, names)
    assert not set(uploads) & stored
    assert {names[h] for h in index.values()} <= stored | set(uploads)
    assert unreferenced(stored | set(uploads), [[names[h] for h in index.values()]]) <= stored


def test_object_names_depend_on_the_key() -> None:
    sha = "0" * 64
    assert media_object_name(b"k1", sha) != media_object_name(b"k2", sha)
    assert sha not in media_object_name(b"k1", sha)


KEYS = [
    "db/20261125T030000Z/dump.enc", "db/20261125T030000Z/globals.enc",
    "db/20261125T030000Z/manifest.enc",
    "db/20261126T030000Z/dump.enc",  # interrupted: no manifest
    "db/20261127T030000Z/manifest.enc", "db/20261127T150000Z/manifest.enc",
    "db/not-a-stamp/manifest.enc", "media/index/20261127T030000Z.enc",
]


def test_sets_are_complete_only_with_a_manifest() -> None:
    complete, seen = sets_in(KEYS)
    assert complete == {"20261125T030000Z", "20261127T030000Z", "20261127T150000Z"}
    assert seen == complete | {"20261126T030000Z"}


@pytest.mark.parametrize(("wanted", "expected"), [
    ("latest", "20261127T150000Z"),
    ("2026-11-27", "20261127T150000Z"),
    ("20261127T030000Z", "20261127T030000Z"),
    ("2026-11-25", "20261125T030000Z"),
    ("2026-11-26", None),
    ("yesterday", None),
])
def test_choose(wanted: str, expected: str | None) -> None:
    complete, _ = sets_in(KEYS)
    assert choose(complete, wanted) == expected
