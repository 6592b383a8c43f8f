"""The bootstrap's steps: clear errors for a broken environment, no silent wrong version.

The package step runs against a simulated package manager (``GEMNAR_APT_GET``,
``GEMNAR_DPKG_QUERY`` and ``GEMNAR_POLICY_RC_D`` point it at scripts and a policy file under
the test's temp directory), both on a machine that already has a ``policy-rc.d`` (as Debian
container images do) and on one that has none.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.toolchain import PROJECT_ROOT, PULUMI_CLI_VERSION
from tests.support.tooling import require_executable

BOOTSTRAP = PROJECT_ROOT / "tools" / "bootstrap.sh"


def run_cli_step(tmp_path: Path, path_dirs: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(tmp_path),
        "PATH": ":".join(str(d) for d in [*path_dirs, Path("/usr/bin"), Path("/bin")]),
        "GEMNAR_TOOLS_CACHE": str(tmp_path / "cache"),
        "GEMNAR_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run(
        ["bash", str(BOOTSTRAP), "cli"], env=env, capture_output=True, text=True, timeout=60
    )


def fake_pulumi(directory: Path, version: str) -> None:
    directory.mkdir(parents=True)
    script = directory / "pulumi"
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(0o755)


def test_no_go_and_no_cli_says_what_is_missing(tmp_path: Path) -> None:
    result = run_cli_step(tmp_path, [])
    assert result.returncode != 0
    assert f"no Pulumi CLI v{PULUMI_CLI_VERSION} and no Go toolchain" in result.stderr
    assert "install Go" in result.stderr


def test_other_pulumi_version_on_path_is_not_used_silently(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "otherbin", "v3.100.0")
    result = run_cli_step(tmp_path, [tmp_path / "otherbin"])
    assert "ignoring" in result.stdout and "v3.100.0" in result.stdout
    assert result.returncode != 0  # and without Go it cannot build the right one
    cached = tmp_path / "cache" / f"pulumi-cli-v{PULUMI_CLI_VERSION}" / "bin" / "pulumi"
    assert not cached.exists()


def test_matching_pulumi_on_path_is_used(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "goodbin", f"v{PULUMI_CLI_VERSION}")
    result = run_cli_step(tmp_path, [tmp_path / "goodbin"])
    assert result.returncode == 0, result.stderr
    cached = tmp_path / "cache" / f"pulumi-cli-v{PULUMI_CLI_VERSION}" / "bin" / "pulumi"
    assert cached.resolve() == (tmp_path / "goodbin" / "pulumi").resolve()


# Records every call and, at install time, what policy-rc.d said; fails the subcommand named
# in FAKE_APT_FAIL.
FAKE_APT_GET = """#!/bin/sh
echo "apt-get $*" >>"$FAKE_LOG"
if [ "$1" = install ]; then
  if [ -e "$GEMNAR_POLICY_RC_D" ]; then
    echo "policy during install: $(tail -n 1 "$GEMNAR_POLICY_RC_D")" >>"$FAKE_LOG"
  fi
fi
if [ "$1" = "$FAKE_APT_FAIL" ]; then echo "E: simulated $1 failure" >&2; exit 100; fi
exit 0
"""
# Every package is missing, so the step always has something to install.
FAKE_DPKG_QUERY = """#!/bin/sh
echo "dpkg-query: no packages found matching $4" >&2
exit 1
"""


def run_package_step(
    tmp_path: Path, *, policy_existed: bool, fail: str = ""
) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in {"apt-get": FAKE_APT_GET, "dpkg-query": FAKE_DPKG_QUERY}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    policy = tmp_path / "policy-rc.d"
    if policy_existed:
        policy.write_text("#!/bin/sh\n# the image's own policy\nexit 0\n")
        policy.chmod(0o755)
    log = tmp_path / "apt.log"
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "GEMNAR_TOOLS_CACHE": str(tmp_path / "cache"),
        "GEMNAR_STATE_DIR": str(tmp_path / "state"),
        "GEMNAR_APT_GET": str(bin_dir / "apt-get"),
        "GEMNAR_DPKG_QUERY": str(bin_dir / "dpkg-query"),
        "GEMNAR_POLICY_RC_D": str(policy),
        "GEMNAR_SUDO": "",  # the fakes need no root, whoever runs the tests
        "FAKE_LOG": str(log),
        "FAKE_APT_FAIL": fail,
    }
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "packages"], env=env, capture_output=True, text=True, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, policy, calls


def test_package_step_completes_when_policy_rc_d_already_existed(tmp_path: Path) -> None:
    result, policy, calls = run_package_step(tmp_path, policy_existed=True)
    assert result.returncode == 0, result.stderr
    assert "bootstrap: error" not in result.stderr
    assert calls[0] == "apt-get update -q"
    assert calls[1].startswith("apt-get install -y -q --no-install-recommends postgresql ")
    # The image's own policy is used as it is and left in place.
    assert calls[2] == "policy during install: exit 0"
    assert policy.read_text() == "#!/bin/sh\n# the image's own policy\nexit 0\n"


def test_package_step_completes_and_removes_the_policy_it_created(tmp_path: Path) -> None:
    result, policy, calls = run_package_step(tmp_path, policy_existed=False)
    assert result.returncode == 0, result.stderr
    assert "bootstrap: error" not in result.stderr
    # Packaged daemons were kept from starting during the install, and only then.
    assert calls[2] == "policy during install: exit 101"
    assert not policy.exists()


@pytest.mark.parametrize("policy_existed", [True, False], ids=["policy-existed", "no-policy"])
@pytest.mark.parametrize("fail", ["update", "install"])
def test_failing_package_step_says_what_failed(
    tmp_path: Path, fail: str, policy_existed: bool
) -> None:
    result, policy, _ = run_package_step(tmp_path, policy_existed=policy_existed, fail=fail)
    assert result.returncode != 0
    assert "E: simulated" in result.stderr  # apt-get's own message is not swallowed
    assert "bootstrap: error: command failed (exit 100)" in result.stderr
    assert f'"$APT_GET" {fail}' in result.stderr
    # A policy the script created does not outlive it; one that existed stays.
    assert policy.exists() == policy_existed


def test_no_package_manager_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "packages"],
        env={
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "GEMNAR_APT_GET": str(tmp_path / "no-such-apt-get"),
            "GEMNAR_DPKG_QUERY": "false",  # every package is missing
            "GEMNAR_POLICY_RC_D": str(tmp_path / "policy-rc.d"),
        },
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "missing packages postgresql" in result.stderr
    assert f"and no {tmp_path / 'no-such-apt-get'}" in result.stderr


def test_bootstrap_is_shellcheck_clean() -> None:
    shellcheck = require_executable("shellcheck")
    scripts = [BOOTSTRAP, PROJECT_ROOT / "tools/test.sh", PROJECT_ROOT / "tools/local.sh",
               PROJECT_ROOT / ".ci/run"]
    result = subprocess.run([str(shellcheck), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
