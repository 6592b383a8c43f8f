"""End-to-end: the lab stack through the real engine — Debian machines booted from the prod
user data, checked from inside each machine and from a lab address outside the VPC.

One stack for the module, brought up from whatever image cache there is (CI starts cold), its
state in the lab's own S3 server; the teardown destroys it and fails if a machine, namespace,
mount, loop device or process is left. Times (image, up, one more worker, destroy) are printed
at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from components.lab_nodes import worker_public_address
from components.offsite_storage import BACKUP_ENV
from lab import image, machine
from provisioning import firstboot
from provisioning.settings import ControllerPaths
from tests.lab import boot_order
from tests.lab.stack import PROJECT_ROOT, LabStack, brought_up, new_lab_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

PRIVATE_PORTS = (5432, 6432, 6379, 8000, 9100)
MACHINES = ("controller", "worker-0", "worker-1")
VPC_INDEX = {"controller": 3, "worker-0": 10, "worker-1": 11}


@pytest.fixture(scope="module")
def lab_stack(lab_available: None, lab_image: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    stack = new_lab_stack(tmp_path_factory.mktemp("lab-stack"))
    started = time.monotonic()
    for role in image.ROLE_PACKAGES:
        image.lower_dirs(image.default_spec(PROJECT_ROOT), role)
    stack.timings["image"] = time.monotonic() - started
    with brought_up(stack):
        yield stack


def engine_tail(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-6000:]


def test_up_succeeds(lab_stack: LabStack) -> None:
    result = lab_stack.results["up"]
    assert result.returncode == 0, f"lab `up` with 2 workers failed:\n{engine_tail(result)}"


@pytest.mark.parametrize("name", MACHINES)
def test_cloud_init_finished_without_errors(lab_stack: LabStack, name: str) -> None:
    # `--wait`: when `up` stops early, a machine may still be in its final stage.
    status = lab_stack.inside(name, "cloud-init", "status", "--wait", "--long", timeout=600)
    assert "status: done" in status.stdout, f"{name}: cloud-init did not finish:\n{status.stdout}"
    assert "errors: []" in status.stdout or "error" not in status.stdout.lower(), (
        f"{name}: cloud-init reported errors:\n{status.stdout}")


@pytest.mark.parametrize("name", MACHINES)
def test_no_failed_units(lab_stack: LabStack, name: str) -> None:
    failed = lab_stack.inside(name, "systemctl", "--failed", "--no-legend", "--plain")
    units = [line.split()[0] for line in failed.stdout.splitlines() if line.strip()]
    assert units == [], f"{name}: failed units {units}:\n{failure_report(lab_stack, name, units)}"


def failure_report(lab_stack: LabStack, name: str, units: list[str]) -> str:
    """What is known of the failed ``units``: their status (the result and exit code), their
    journal, and the machine's console lines naming them (a unit that fails before journald
    runs, as systemd-remount-fs once did in CI, is only there)."""
    text = (machine.machine_dir(lab_stack.stack_dir, name) / "console.log").read_text(
        errors="replace")
    # The console colours its lines and cuts long names ("systemd-remount-f…nt Root ...").
    console = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
    reports = []
    for unit in units:
        # The console names a unit by a cut name and its description.
        description = lab_stack.inside(name, "systemctl", "show", "-p", "Description",
                                       "--value", unit).stdout.strip() or unit
        stem = unit[:12]
        reports.append(
            lab_stack.inside(name, "systemctl", "status", "--no-pager", "-l", unit).stdout
            + lab_stack.inside(name, "journalctl", "-b", "-u", unit, "-n", "15",
                               "--no-pager").stdout
            + "\nconsole:\n" + "\n".join(line for line in console
                                          if stem in line or description in line))
    return "\n".join(reports)


@pytest.mark.parametrize("name", MACHINES)
def test_nftables_is_active_with_a_ruleset(lab_stack: LabStack, name: str) -> None:
    active = lab_stack.inside(name, "systemctl", "is-active", "nftables").stdout.strip()
    assert active == "active", f"{name}: nftables.service is {active!r}"
    ruleset = lab_stack.inside(name, "nft", "list", "ruleset").stdout
    assert "chain input" in ruleset and "policy drop" in ruleset, (
        f"{name}: no input chain dropping by default:\n{ruleset}")


# sshd is up before the setup script on purpose: the deployer waits for the first boot over
# SSH (keys only; provisioning.firstboot).
FIRST_BOOT_EXEMPT = ("ssh.service",)


@pytest.mark.parametrize("name", MACHINES)
def test_firewall_was_loaded_before_every_listener_started(lab_stack: LabStack, name: str) -> None:
    """Nothing that listens now began to start before nftables loaded its ruleset on this (first)
    boot, from systemd's journal inside the machine. The lab's images hold the packages, so
    systemd starts their units at boot: the guard (provisioning.firstboot) must skip them."""
    condition = f"ConditionPathExists={firstboot.FIREWALL_READY_FLAG}"
    probe = lab_stack.inside(name, "python3", "-c",
                             (PROJECT_ROOT / "tests" / "lab" / "boot_order.py").read_text(),
                             condition)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    firewall, starts, listening = seen["firewall"], seen["first_starts"], seen["listeners"]
    early = boot_order.early(firewall, starts, listening, FIRST_BOOT_EXEMPT)
    assert early == {}, (
        f"{name}: started before nftables (at {firewall} us): {early}; listening: {listening}")
    # The image enables the node exporter on both roles: its boot start was skipped.
    assert "prometheus-node-exporter.service" in seen["skipped"], seen["skipped"]
    policy = lab_stack.inside(name, "test", "-e", firstboot.POLICY_RC_D)
    assert policy.returncode == 1, f"{name}: {firstboot.POLICY_RC_D} left in place"
    first = min(starts[unit] for unit in set(listening) - set(FIRST_BOOT_EXEMPT))
    lab_stack.timings[f"{name}: first listener after nftables"] = (first - firewall) / 1e6
    lab_stack.timings[f"{name}: boot starts skipped"] = len(seen["skipped"])


def listeners(stack: LabStack, name: str) -> set[tuple[str, int]]:
    out = stack.inside(name, "ss", "-Hltn").stdout
    found = set()
    for line in out.splitlines():
        address, port = line.split()[3].rsplit(":", 1)
        found.add((address.strip("[]"), int(port)))
    return found


def test_controller_listens_as_designed(lab_stack: LabStack) -> None:
    vpc = lab_stack.net.vpc_host(VPC_INDEX["controller"])
    found = listeners(lab_stack, "controller")
    for port in (5432, 6432, 6379, 9100):
        bound = {address for address, p in found if p == port}
        assert bound and bound <= {"127.0.0.1", vpc, "::1"}, (
            f"controller: port {port} bound on {bound or 'nothing'}; all: {sorted(found)}")
    public = {port for address, port in found if address in ("0.0.0.0", "*", "::")}
    assert public <= {22, 80, 443}, f"controller: on every address: {sorted(public)}"


@pytest.mark.parametrize("name", ["worker-0", "worker-1"])
def test_worker_listens_as_designed(lab_stack: LabStack, name: str) -> None:
    vpc = lab_stack.net.vpc_host(VPC_INDEX[name])
    found = listeners(lab_stack, name)
    for port in (8000, 9100):
        bound = {address for address, p in found if p == port}
        assert bound and bound <= {"127.0.0.1", vpc}, (
            f"{name}: port {port} bound on {bound or 'nothing'}; all: {sorted(found)}")
    wildcard = {port for address, port in found if address in ("0.0.0.0", "*", "::")}
    assert wildcard <= {22}, f"{name}: on every address: {sorted(wildcard)}"
    controller_only = {5432, 6432, 6379} & {port for _, port in found}
    assert not controller_only, f"{name} runs controller daemons on {controller_only}"


@pytest.fixture(scope="module")
def open_from_outside(lab_stack: LabStack) -> set[tuple[str, int]]:
    """The private ports that answer on a public address (the controller's and each
    worker's: every Vultr instance has one), probed from outside the VPC all at once."""
    targets = [lab_stack.net.controller_public,
               *(worker_public_address(lab_stack.net, i) for i in (0, 1))]
    site = (lab_stack.net.controller_public, 443)  # must answer: the probe sees open ports
    found = lab_stack.tcp_open([site, *((a, port) for a in targets for port in PRIVATE_PORTS)])
    assert site in found, f"the site's own port does not answer the probe: {found}"
    return found - {site}


@pytest.mark.parametrize("port", PRIVATE_PORTS)
def test_private_ports_are_closed_from_outside_the_vpc(
    open_from_outside: set[tuple[str, int]], port: int
) -> None:
    open_on = sorted(address for address, p in open_from_outside if p == port)
    assert open_on == [], f"port {port} answers from outside the VPC on {open_on}"


def test_ssh_refuses_password_login(lab_stack: LabStack) -> None:
    result = subprocess.run(
        ["nsenter", f"--net={lab_stack.net.netns_path}", "--", "ssh", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5",
         f"root@{lab_stack.net.controller_public}", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0, "SSH let a client in without a key"
    methods = re.search(r"Permission denied \(([^)]*)\)", result.stderr)
    assert methods is not None, f"SSH did not refuse as expected: {result.stderr}"
    offered = methods.group(1)
    assert "password" not in offered and "keyboard-interactive" not in offered, (
        f"SSH offers {offered}")


def create_site_user(stack: LabStack) -> tuple[tuple[str, str], str]:
    """A user in the lab's database, made on worker-0 with the app's own environment; and
    what went wrong, if it could not be made ("" when it was)."""
    username, password = f"lab-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    script = (
        "set -a; . /etc/gemnar/app.env; . /etc/gemnar/secrets.env; set +a; cd /opt/gemnar/app; "
        f"DJANGO_SUPERUSER_PASSWORD={password} /opt/gemnar/venv/bin/python manage.py "
        f"createsuperuser --noinput --username {username} --email lab@example.com"
    )
    made = stack.inside("worker-0", "sh", "-c", script)
    problem = "" if made.returncode == 0 else made.stderr.strip().splitlines()[-1:][0]
    return (username, password), problem


@pytest.fixture(scope="module")
def site(lab_stack: LabStack) -> dict[str, Any]:
    """What a person sees through the controller's lab address (tests/lab/site_probe.py)."""
    (username, password), problem = create_site_user(lab_stack)
    url = f"https://{lab_stack.net.controller_public}"
    seen: dict[str, Any] = json.loads(lab_stack.python_in_lab(
        "import runpy, sys\n"
        f"sys.argv = ['site_probe', {url!r}, {username!r}, {password!r}]\n"
        "runpy.run_module('tests.lab.site_probe', run_name='__main__')\n", timeout=180))
    return {**seen, "username": username, "user_problem": problem}


def test_health_through_the_controller(site: dict[str, Any]) -> None:
    assert site["health"]["status"] == 200, f"/health/: {site['health']}"


def test_websocket_echo_through_the_controller(site: dict[str, Any]) -> None:
    assert "ping through the lab" in site["websocket"], f"WebSocket echo: {site['websocket']}"


def test_home_page_through_the_controller(site: dict[str, Any]) -> None:
    # The page and the user need the schema: the app's start ran `migrate` (gemnar-app.service).
    assert site["user_problem"] == "", f"createsuperuser on worker-0: {site['user_problem']}"
    assert site["page"]["status"] == 200, f"/: {site['page']}"


def test_login_session_holds_across_workers(site: dict[str, Any]) -> None:
    assert site["login"]["status"] == 302, f"login: {site['login']}"
    seen = site["whoami"]
    assert set(seen) == {"worker-0", "worker-1"}, f"/whoami/ answered from {sorted(seen)}"
    for worker, who in seen.items():
        assert who == {"authenticated": True, "username": site["username"]}, (worker, who)


def test_upload_is_fetched_back_through_nginx(site: dict[str, Any]) -> None:
    assert site["upload"]["status"] == 201, f"upload: {site['upload']}"
    assert site["media"]["status"] == 200 and site["media"]["same"], f"media: {site['media']}"


def test_stylesheet_through_the_controller(site: dict[str, Any]) -> None:
    """The page's hashed stylesheet: the controller's disk has no static files on the prod
    path, so Nginx fetched it from a worker (WhiteNoise) and keeps it in its cache."""
    static = site.get("static")
    assert static, "the page links no stylesheet"
    assert re.fullmatch(r"/static/.+\.[0-9a-f]{12}\.css", static["path"]), static
    assert static["status"] == 200 and static["length"] > 0, f"stylesheet: {static}"
    assert static["content_type"].startswith("text/css"), static
    assert static["cache_control"] == "max-age=315360000, public, immutable", static
    first, second = static["cache_status"]
    assert first in {"MISS", "HIT"} and second == "HIT", static


# The controller's own backup command, as gemnar-backup.sh runs it (provisioning.files):
# from the project's directory, whose packages its venv's Python imports.
PATHS = ControllerPaths()
BACKUPS = ("env", "-C", PATHS.project_dir, f"{PATHS.project_dir}/.venv/bin/python",
           "-m", "backups", "--settings", PATHS.settings_file, "--env", BACKUP_ENV)


def test_the_nightly_backup_runs_in_its_sandbox_and_restores_from_off_site(
    lab_stack: LabStack, site: dict[str, Any]
) -> None:
    """Issue 18 on the prod node path: the timer's unit under real systemd (its sandbox, the
    root-only backup.env the program wrote over SSH), off-site to the lab's S3 server as prod
    to Vultr Object Storage, then a restore from off-site into a fresh database, checked
    against the manifest. ``site`` first: a user and an uploaded file to back up."""
    assert site["upload"]["status"] == 201, f"upload: {site['upload']}"
    started = time.monotonic()
    ran = lab_stack.inside("controller", "systemctl", "start", "gemnar-backup.service",
                           timeout=600)
    took = time.monotonic() - started
    journal = lab_stack.inside("controller", "journalctl", "--no-pager", "-o", "cat",
                               "-u", "gemnar-backup.service").stdout
    assert ran.returncode == 0, f"gemnar-backup.service failed:\n{ran.stderr}\n{journal[-3000:]}"
    done = [line for line in journal.splitlines() if line.startswith("gemnar-backup: ")]
    assert done and " ok: " in done[-1], journal[-3000:]
    status = lab_stack.inside("controller", *BACKUPS, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    sets = json.loads(status.stdout)["sets_now"]
    assert sets.get("offsite") and sets.get("local"), sets
    started = time.monotonic()
    restored = lab_stack.inside("controller", *BACKUPS, "restore", "--from", "latest",
                                "--source", "offsite", "--into", "gemnar_lab_restore_check",
                                "--media-into", "/tmp/gemnar-lab-restore-media", timeout=600)
    restore_took = time.monotonic() - started
    assert restored.returncode == 0, restored.stdout + restored.stderr
    result = json.loads(restored.stdout)
    assert result["store"] == "offsite" and result["swapped"] is False, result
    assert result["tables"] > 0 and result["rows"] > 0, result
    assert result["media_files"] >= 1, result
    print(f"\nlab backup: {done[-1]}; unit {took:.1f}s; restore from off-site "
          f"{restore_took:.1f}s: {result['tables']} tables, {result['rows']} rows checked, "
          f"{result['media_files']} media files")


def test_adding_one_worker(lab_stack: LabStack) -> None:
    new = lab_stack.net.vpc_host(VPC_INDEX["worker-1"] + 1)
    wanted = {f"node {new}:9100", f"app {new}:9101"}
    lab_stack.request_count(3)
    result = lab_stack.engine("up", label="up-3-workers")
    assert result.returncode == 0, f"`up` to 3 workers failed:\n{engine_tail(result)}"
    status = lab_stack.inside("worker-2", "cloud-init", "status").stdout.strip()
    assert status == "status: done", f"worker-2: {status}"
    # Issue 17 on the prod node path: the membership's file_sd brings worker-2's targets in.
    wait_until(lambda: all(prometheus_targets(lab_stack).get(t) == "up" for t in wanted),
               timeout_s=60, interval_s=1, what="worker-2's Prometheus targets up",
               detail=lambda: json.dumps(prometheus_targets(lab_stack), indent=1))
    lab_stack.request_count(2)
    result = lab_stack.engine("up", label="up-back-to-2")
    assert result.returncode == 0, f"`up` back to 2 workers failed:\n{engine_tail(result)}"
    wait_until(lambda: not wanted & set(prometheus_targets(lab_stack)), timeout_s=60,
               interval_s=1, what="worker-2's Prometheus targets gone",
               detail=lambda: json.dumps(prometheus_targets(lab_stack), indent=1))


# Prometheus's controller jobs (provisioning.monitoring); node and app: one target per worker.
MONITORING_JOBS = {"prometheus", "alertmanager", "postgres", "pgbouncer", "redis", "nginx"}
TARGETS = ("import json, urllib.request\n"
           "url = 'http://127.0.0.1:9090/api/v1/targets?state=active'\n"
           "data = json.load(urllib.request.urlopen(url, timeout=5))['data']['activeTargets']\n"
           "print(json.dumps({t['labels']['job'] + ' ' + t['labels']['instance']: t['health']\n"
           "                  for t in data}))\n")


def prometheus_targets(lab_stack: LabStack) -> dict[str, str]:
    """``"job instance"`` -> health, asked from inside the controller (Prometheus listens on
    loopback); empty while it does not answer."""
    result = lab_stack.inside("controller", "python3", "-c", TARGETS)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def test_prometheus_scrapes_every_target_up(lab_stack: LabStack) -> None:
    """Issue 17 on the prod node path: Debian's units, the secrets hook, file_sd from
    gemnar-lb-apply; asked from inside the controller (Prometheus listens on loopback)."""
    vpc = {name: lab_stack.net.vpc_host(index) for name, index in VPC_INDEX.items()}
    wanted = (set(MONITORING_JOBS)
              | {f"node {vpc[n]}:9100" for n in MACHINES}
              | {f"app {vpc[n]}:9101" for n in MACHINES if n != "controller"})

    def all_up() -> bool:
        seen = prometheus_targets(lab_stack)
        found = {key.split()[0] if key.split()[0] in MONITORING_JOBS else key for key in seen}
        return found == wanted and set(seen.values()) == {"up"}

    wait_until(all_up, timeout_s=120, interval_s=2, what="every Prometheus target up",
               detail=lambda: json.dumps(prometheus_targets(lab_stack), indent=1))
