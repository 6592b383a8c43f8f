"""Build the bundled app artifact: app tree + pinned wheels + requirements, byte-reproducible.

Layout inside the tarball: ``app/`` (the Django project), ``wheels/`` (every dependency as a
wheel for the nodes' Python, Debian 12's 3.11), ``requirements.txt`` (the pinned lines) and
``SOURCE_HASH``. Wheels are downloaded once per requirement set into a cache outside the
repository; the node then installs with ``pip install --no-index``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from appdelivery import bundle
from appdelivery.source import ARTIFACT_KIND, AppSource, app_files

# The nodes install the wheels with Debian 12's python3 (3.11.2). Dependency markers are
# evaluated by the interpreter that resolves them, to the micro version (redis needs
# async-timeout below 3.11.3, which a 3.11.7 resolution leaves out, and ``pip download
# --python-version`` does not change that), so resolution runs in a venv of a Debian 12
# python3: this machine's /usr/bin/python3, or GEMNAR_NODE_PYTHON.
NODE_PYTHON = "/usr/bin/python3"


def cache_root() -> Path:
    base = os.environ.get("GEMNAR_ARTIFACT_CACHE") or str(
        Path.home() / ".cache" / "gemnar" / "artifacts")
    return Path(base)


def node_python() -> str:
    return os.environ.get("GEMNAR_NODE_PYTHON") or NODE_PYTHON


def _node_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def wheelhouse(requirements: tuple[str, ...], cache: Path) -> Path:
    """A directory holding a wheel for every requirement (and their dependencies), resolved
    by the nodes' interpreter."""
    python = node_python()
    version = _node_version(python)
    key = hashlib.sha256("\n".join([version, *requirements]).encode()).hexdigest()
    target = cache / "wheels" / key[:16]
    if (target / ".complete").exists():
        return target
    resolver = cache / f"resolver-{version}"
    if not (resolver / "bin" / "pip").exists():
        subprocess.run([python, "-m", "venv", str(resolver)], check=True)
    target.mkdir(parents=True, exist_ok=True)
    # `pip wheel`, not `pip download --only-binary`: a few pins (ediri-vultr) ship only an
    # sdist, which is built into a wheel here once so that the node never builds anything.
    subprocess.run(
        [str(resolver / "bin" / "pip"), "wheel", "--quiet", "--disable-pip-version-check",
         "--prefer-binary", "--wheel-dir", str(target), *requirements],
        check=True,
    )
    (target / ".complete").write_text("")
    return target


def build(source: AppSource, cache: Path | None = None) -> Path:
    """The artifact for ``source``: built once, then found in the cache by its hash."""
    cache = cache or cache_root()
    target = cache / source.artifact_name
    if target.exists():
        return target
    return bundle.write(cache, ARTIFACT_KIND, source.content_hash, source.requirements,
                        source.app_dir, list(app_files(source.app_dir)), "app",
                        wheelhouse(source.requirements, cache))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
