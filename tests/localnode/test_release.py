"""A local node's app releases: the prod layout, checked hashes, one-rename switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from localnode import release

FILES = {"manage.py": "print('manage')\n", "site/settings.py": "X = 1\n"}


def app(tmp_path: Path, name: str, extra: str = "") -> Path:
    root = tmp_path / name
    for relative, text in FILES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text + extra)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"cache")
    return root


def test_a_release_is_the_app_tree_with_its_source_hash_beside_it(tmp_path: Path) -> None:
    source = app(tmp_path, "src")
    expected = release.app_source(source).content_hash
    installed = release.install(source, expected, tmp_path / "releases")
    assert installed == tmp_path / "releases" / expected
    assert (installed / "SOURCE_HASH").read_text() == f"{expected}\n"
    assert (installed / "app" / "site" / "settings.py").read_text() == "X = 1\n"
    assert not (installed / "app" / "__pycache__").exists()
    app_dir = tmp_path / "opt" / "app"
    assert release.current(app_dir) is None
    release.activate(installed, app_dir)
    assert release.current(app_dir) == expected
    assert app_dir.resolve() == (installed / "app").resolve()


def test_switching_releases_and_back(tmp_path: Path) -> None:
    app_dir = tmp_path / "app-link"
    first = app(tmp_path, "v1")
    second = app(tmp_path, "v2", extra="# v2\n")
    one = release.install(first, release.app_source(first).content_hash, tmp_path / "r")
    two = release.install(second, release.app_source(second).content_hash, tmp_path / "r")
    assert one != two
    release.activate(one, app_dir)
    release.activate(two, app_dir)
    assert release.current(app_dir) == two.name
    release.activate(one, app_dir)  # a rollback names the installed directory
    assert release.current(app_dir) == one.name


def test_a_source_that_changed_since_the_plan_is_refused(tmp_path: Path) -> None:
    source = app(tmp_path, "src")
    with pytest.raises(ValueError, match="the deploy planned 0000"):
        release.install(source, "0000", tmp_path / "releases")
    with pytest.raises(ValueError, match="not an installed release"):
        release.activate(tmp_path / "releases" / "0000", tmp_path / "app")
