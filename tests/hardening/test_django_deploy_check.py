"""Django's ``manage.py check --deploy`` with the cluster settings a prod worker runs.

Before the issue: 2 warnings (security.W004 HSTS, security.W008 SSL redirect), both covered
by the controller's Nginx. Target: 0, each silenced one with its reason in settings_helper,
and nothing silenced when the app is told to do the job itself.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from engine.toolchain import PROJECT_ROOT
from localnode.worker import parse_env_file
from provisioning.app_env import render_worker_app_env, render_worker_secrets_env
from tests.provisioning.combos import WORKERS


def deploy_check(name: str, **extra: str) -> subprocess.CompletedProcess[str]:
    worker = WORKERS[name]
    env = {
        "PATH": os.environ["PATH"], "LANG": "C.UTF-8",
        **parse_env_file(render_worker_app_env(worker)),
        **parse_env_file(render_worker_secrets_env(
            worker, db_password=secrets.token_hex(16), redis_password=secrets.token_hex(16),
            secret_key=secrets.token_urlsafe(50))),
        **extra,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT / "app", env=env, capture_output=True, text=True, check=False,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["prod-default", "prod-git"])
def test_check_deploy_reports_nothing(name: str) -> None:
    result = deploy_check(name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (2 silenced)." in result.stdout, result.stdout


def test_the_silenced_checks_depend_on_nginx_doing_the_job() -> None:
    """Only what Nginx covers is silenced: insecure session cookies still fail the check."""
    result = deploy_check("prod-git", GEMNAR_SECURE_COOKIES="false")
    assert result.returncode != 0
    assert "security.W012" in result.stderr + result.stdout  # SESSION_COOKIE_SECURE
