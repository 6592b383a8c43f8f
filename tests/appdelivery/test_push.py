"""Pushing the artifact over real SSH: sent once per content hash, through a jump host, and
stopped by a host key that is not the pinned one.

The node is a real sshd on a random loopback address (``localnode.sshd``), whose PATH and
paths live under a temp root; the rendered ``gemnar-install-app`` installs there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appdelivery.push import PushError, plan, run
from appdelivery.source import AppSource
from appdelivery.ssh import Endpoint
from engine.toolchain import PROJECT_ROOT
from provisioning.files import render_install_app
from provisioning.settings import WorkerPaths, WorkerSettings
from tests.support import daemons
from tests.support.ssh_node import Provisioned, keygen, public_key, ssh_node
from tests.support.tooling import require_executable

Node = Provisioned[WorkerSettings]


@pytest.fixture
def node() -> Iterator[Node]:
    require_executable("unshare")
    with ssh_node("gemnar-push-", lambda root: WorkerPaths.under(root).commands_dir) as ssh:
        settings = WorkerSettings(
            private_address=ssh.address, controller_address=ssh.address,
            vpc_subnet="127.0.0.0/8", memory_mb=512, vcpus=1, paths=WorkerPaths.under(ssh.root),
        )
        script = render_install_app(settings)
        daemons.write_file(script.path, script.content, 0o755)
        yield Node(ssh, settings)


def _push(node: Node, target_key: str | None, jump: Endpoint | None = None) -> str:
    paths = node.settings.paths
    pushed = plan(PROJECT_ROOT, AppSource.of_project(PROJECT_ROOT).content_hash,
                  node.ssh.endpoint(target_key), jump, artifacts_dir=paths.artifacts_dir,
                  install=str(Path(paths.commands_dir) / "gemnar-install-app"))
    return run(pushed, node.ssh.private_key)


def test_sent_once_then_found_by_hash_through_the_jump_host(node: Node) -> None:
    jump = node.ssh.endpoint(node.ssh.host_key)
    first = _push(node, node.ssh.host_key, jump)
    assert first.splitlines()[0] == "sent"
    paths = node.settings.paths
    name = AppSource.of_project(PROJECT_ROOT).artifact_name
    assert (Path(paths.artifacts_dir) / name).exists()
    assert Path(paths.venv_dir, "bin", "uvicorn").exists()
    again = _push(node, node.ssh.host_key, jump)
    assert again.splitlines()[0] == "present"


def test_a_host_key_other_than_the_pinned_one_stops_the_push(node: Node, tmp_path: Path) -> None:
    wrong = public_key(keygen(tmp_path / "other").with_suffix(".pub"))
    with pytest.raises(PushError, match="not the pinned one; the deploy stops here"):
        _push(node, wrong)
    assert not Path(node.settings.paths.artifacts_dir).exists()


def test_a_changed_app_since_planning_is_refused(node: Node) -> None:
    with pytest.raises(PushError, match="the app changed since the deploy was planned"):
        plan(PROJECT_ROOT, "0" * 20, node.ssh.endpoint(node.ssh.host_key), None)
