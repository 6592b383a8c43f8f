"""The app artifact carries every distribution the app imports.

A worker installs the app from the wheels of requirements.txt's app section only, with no index
(appdelivery/source.py). A package the app imports that is pinned in another section is missing
on every worker, and nothing local notices: the project's own virtualenv has all sections. Seen
once: django-storages and boto3 sat outside the app section, so uploads to the bucket would fail on
every prod and lab worker.

The check reads the app's sources for the third-party modules it names (import statements, and
dotted names in strings such as settings' backends and apps), imports those in a child interpreter
(so each name is real), maps them to their distributions, and requires each to be in the app
section or required, transitively, by one that is, following the extras the pins name
(``django-storages[s3]`` is what brings boto3). Modules imported only when present (redis-py
looks for OpenTelemetry) are not the app's requirements, which is why it is not ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from appdelivery.source import app_requirements
from project import PROJECT_ROOT

APP_DIR = PROJECT_ROOT / "app"

_PROBE = """
import importlib, json, sys
# Some modules read Django's settings, or need their app installed, on import.
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=[
    "django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
    "django.contrib.messages", "django.contrib.staticfiles",
])
django.setup()
imported = []
for name in json.loads(sys.argv[1]):
    parts = name.split(".")
    # A dotted string may end in a class name ("storages.backends.s3.S3Storage"): import the
    # longest prefix that is a module.
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        try:
            importlib.import_module(candidate)
        except ModuleNotFoundError as error:
            if error.name != candidate:
                raise
            continue
        imported.append(candidate)
        break
print(json.dumps(imported))
"""
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _third_party_modules(third_party: set[str]) -> list[str]:
    """The dotted names in the app's sources whose top level is a ``third_party`` module."""
    named: set[str] = set()
    for path in sorted(APP_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named.add(node.module)
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and _DOTTED.match(node.value)):
                named.add(node.value)
    return sorted(name for name in named if name.split(".")[0] in third_party)


def _requires_closure(pins: list[str]) -> set[str]:
    """The distributions ``pins`` need, following requirements whose markers hold for the
    extras asked for (packaging evaluates them as pip does)."""
    seen: set[tuple[str, str]] = set()
    pending = [(Requirement(line), "") for line in pins]
    while pending:
        requirement, wanted_by = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": wanted_by}):
            continue
        name = canonicalize_name(requirement.name)
        for extra in ("", *sorted(requirement.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            pending.extend((Requirement(line), extra) for line in requires)
    return {name for name, _ in seen}


def _shipped() -> set[str]:
    return _requires_closure(
        list(app_requirements((PROJECT_ROOT / "requirements.txt").read_text()))
    )


def test_every_imported_distribution_ships_in_the_app_artifact() -> None:
    distributions_of = metadata.packages_distributions()
    named = _third_party_modules(set(distributions_of))
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(named)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    imported_modules = json.loads(probe.stdout)
    assert "storages.backends.s3" in imported_modules, imported_modules
    top_level = {name.split(".")[0] for name in imported_modules}
    own = {p.name for p in APP_DIR.iterdir() if p.is_dir()}
    imported = {
        canonicalize_name(dist)
        for module in top_level - own - set(sys.stdlib_module_names)
        for dist in distributions_of.get(module, [])
    }
    assert imported, "the probe saw no third-party import: it checks nothing"
    shipped = _shipped()
    missing = sorted(imported - shipped)
    assert not missing, f"imported by the app but not in requirements.txt's app section: {missing}"


def test_the_probe_names_a_distribution_outside_the_app_section() -> None:
    # The same mapping flags a module the app section does not carry (paramiko is the deployer's).
    assert "paramiko" not in _shipped()
    assert canonicalize_name(metadata.packages_distributions()["paramiko"][0]) == "paramiko"
