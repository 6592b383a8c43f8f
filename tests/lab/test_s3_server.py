"""The lab's S3 server for real: started with the lab's network, it holds a Pulumi stack's
state through the pinned CLI (the prod login URL), answers only inside the lab namespace, and
``destroy-all`` leaves no process, address or namespace behind."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from engine.toolchain import PROJECT_ROOT, tool_paths
from lab import hypervisor, netns
from lab import s3 as lab_s3
from lab.netns import LabNetwork
from tests.lab.conftest import leftovers
from tests.support.tooling import missing


def test_s3_server_holds_pulumi_state_in_the_lab_and_goes_with_destroy(
    lab_available: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GEMNAR_STATE_DIR", str(tmp_path / "state"))
    cli = tool_paths().cli
    if not cli.exists():
        missing(f"the Pulumi CLI at {cli}")
    stack = f"s3-{uuid.uuid4().hex[:8]}"
    net = LabNetwork(stack=stack, vpc_subnet="10.20.0.0/24")
    directory = hypervisor.stack_dir(stack)
    pid = 0
    try:
        assert hypervisor.main(["net-up", "--stack", stack]) == 0
        server = lab_s3.load(directory)
        assert server is not None, "net-up recorded no S3 server"
        pid = server.pid
        # Idempotent: a second net-up keeps the running server and its keys.
        assert hypervisor.main(["net-up", "--stack", stack]) == 0
        assert lab_s3.load(directory) == server
        record = directory / "s3" / "endpoint.json"
        assert record.stat().st_mode & 0o077 == 0, "the keys' record is readable by others"
        # It listens only inside the lab's namespace (looked at, not probed: no packet is sent
        # to a lab address in the root namespace).
        listening = {
            where: subprocess.run([*prefix, "ss", "-Hltn"], capture_output=True, text=True,
                                  check=True).stdout
            for where, prefix in (("root", []), ("lab", ["nsenter", f"--net={net.netns_path}"]))
        }
        assert server.hostname in listening["lab"], listening["lab"]
        assert server.hostname not in listening["root"], listening["root"]

        # A stack's state through the CLI, logged in as docs/prod.md logs in to Vultr's.
        project = tmp_path / "project"
        project.mkdir()
        (project / "Pulumi.yaml").write_text("name: gemnar-s3-probe\nruntime: python\n")
        env = {"PATH": "/usr/bin:/bin", "PULUMI_HOME": str(tmp_path / "home"),
               "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_CONFIG_PASSPHRASE": "probe",
               **server.backend_env()}

        def pulumi(*args: str) -> str:
            done = netns.run_inside(net, [str(cli), *args], cwd=project, env=env,
                                    capture_output=True, timeout=120)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
            return str(done.stdout)

        pulumi("stack", "init", "probe")
        listed = json.loads(pulumi("stack", "ls", "--json"))
        assert [s["name"] for s in listed] == ["probe"]
        keys = lab_s3._client(net, server, (
            "import json\n"
            f"print(json.dumps([o['Key'] for o in c.list_objects_v2(Bucket={server.state_bucket!r})"
            ".get('Contents', [])]))\n"))
        assert ".pulumi/stacks/gemnar-s3-probe/probe.json" in json.loads(keys)
        buckets = json.loads(lab_s3._client(
            net, server, "import json\nprint(json.dumps([b['Name'] for b in "
            "c.list_buckets()['Buckets']]))\n"))
        assert set(lab_s3.BUCKETS) <= set(buckets)
        described = subprocess.run(
            [str(PROJECT_ROOT / ".venv" / "bin" / "python"), "-m", "lab.hypervisor",
             "object-storage", "--stack", stack],
            capture_output=True, text=True, env={"GEMNAR_STATE_DIR": str(tmp_path / "state"),
                                                 "PATH": "/usr/bin:/bin"}, check=True)
        assert json.loads(described.stdout) == server.description()
    finally:
        assert hypervisor.main(["destroy-all", "--stack", stack]) == 0
    assert leftovers(net, directory) == [], "destroy-all left parts of the lab behind"
    assert pid and not Path(f"/proc/{pid}").exists(), "the S3 server outlived destroy-all"
