"""What a prod node does on its own at boot, run for real: finding its VPC address and writing
it into its configs, the sshd drop-in, IPv6 admin rules, and the PostgreSQL data volume.

The VPC address is looked for inside a network namespace the test creates (10.x addresses
exist only there); the volume is a loop device over a sparse file, detached afterwards.
"""

from __future__ import annotations

import py_compile
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from provisioning.files import (
    VPC_ADDRESS_SCRIPT,
    RenderedFile,
    address_files,
    controller_files,
    data_volume_commands,
    worker_files,
)
from provisioning.nftables import admin_ssh_rules
from provisioning.settings import VPC_ADDRESS_AT_BOOT, ControllerPaths
from provisioning.sshd import DROPIN_NAME
from tests.provisioning.combos import CONTROLLERS, WORKERS
from tests.support import daemons
from tests.support.netns import add_interface, loop_device, network_namespace
from tests.support.tooling import require_executable

PROD_CONTROLLER = replace(CONTROLLERS["prod-default"], private_address=VPC_ADDRESS_AT_BOOT)
PROD_WORKER = replace(WORKERS["prod-default"], private_address=VPC_ADDRESS_AT_BOOT)


def _file(files: list[RenderedFile], suffix: str) -> RenderedFile:
    (found,) = [f for f in files if f.path.endswith(suffix)]
    return found


@pytest.mark.parametrize("files", [controller_files(PROD_CONTROLLER), worker_files(PROD_WORKER)],
                         ids=["controller", "worker"])
def test_python_programs_compile(files: list[RenderedFile], tmp_path: Path) -> None:
    programs = [f for f in files if f.kind == "python"]
    assert programs
    for program in programs:
        source = tmp_path / (Path(program.path).name + ".py")
        source.write_text(program.content)
        py_compile.compile(str(source), doraise=True)


def test_every_file_that_binds_the_vpc_address_is_filled_in_at_boot() -> None:
    files = controller_files(PROD_CONTROLLER)
    carrying = set(address_files(files))
    names = {Path(p).name for p in carrying}
    assert {"postgresql.conf", "pgbouncer.ini", "redis.conf", "controller.json",
            "prometheus-node-exporter"} <= names
    setup = _file(files, "gemnar-controller-setup.sh").content
    for path in carrying:
        assert f"'{path}'" in setup
    worker = worker_files(PROD_WORKER)
    worker_setup = _file(worker, "gemnar-worker-setup.sh").content
    for path in address_files(worker):
        assert f"'{path}'" in worker_setup
    assert {Path(p).name for p in address_files(worker)} >= {
        "gemnar-uvicorn.sh", "prometheus-node-exporter"}


def test_vpc_address_found_on_the_vpc_interface_and_written_into_configs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "node"
    settings = replace(PROD_CONTROLLER, paths=ControllerPaths.under(root))
    files = controller_files(settings)
    script = _file(files, VPC_ADDRESS_SCRIPT)
    program = tmp_path / "gemnar-vpc-address"
    program.write_text(script.content)
    program.chmod(0o755)
    redis = _file(files, "redis.conf")
    target = tmp_path / "redis.conf"
    target.write_text(redis.content)
    target.chmod(0o640)
    with network_namespace() as ns:
        # An address outside the VPC first: it must not be picked.
        add_interface(ns, "pub0", ["198.51.100.20/24"])
        add_interface(ns, "vpc0", ["10.20.0.7/24"])
        result = ns.run([str(program), str(target)])
    assert result.stdout.strip() == "10.20.0.7"
    text = target.read_text()
    assert "bind 127.0.0.1 10.20.0.7" in text and VPC_ADDRESS_AT_BOOT not in text
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert (root / "etc/gemnar/vpc-address").read_text() == "10.20.0.7\n"


def test_vpc_address_search_gives_up_with_a_message(tmp_path: Path) -> None:
    script = _file(controller_files(replace(
        PROD_CONTROLLER, paths=ControllerPaths.under(tmp_path))), VPC_ADDRESS_SCRIPT)
    program = tmp_path / "gemnar-vpc-address"
    program.write_text(script.content.replace("TIMEOUT_S = int(\"120\")", "TIMEOUT_S = 1"))
    program.chmod(0o755)
    with network_namespace() as ns:
        add_interface(ns, "pub0", ["198.51.100.20/24"])
        result = ns.run([str(program)], check=False)
    assert result.returncode == 1
    assert "no address in 10.20.0.0/24" in result.stderr


@pytest.mark.parametrize("role", ["controller", "worker"])
def test_sshd_dropin_is_accepted_and_hardened(role: str, tmp_path: Path) -> None:
    sshd = require_executable("sshd", "/usr/sbin")
    files = controller_files(PROD_CONTROLLER) if role == "controller" else worker_files(
        PROD_WORKER)
    dropin = _file(files, DROPIN_NAME).content
    host_key = tmp_path / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True)
    config = tmp_path / "sshd_config"
    config.write_text(dropin + f"HostKey {host_key}\n"
                      # What Debian's own sshd_config says after the include: ours must win.
                      "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n")
    effective = subprocess.run([str(sshd), "-T", "-f", str(config)], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    values = dict(line.split(" ", 1) for line in effective if " " in line)
    assert values["passwordauthentication"] == "no"
    assert values["kbdinteractiveauthentication"] == "no"
    assert values["authenticationmethods"] == "publickey"
    assert values["permitrootlogin"] == "without-password"
    assert "nistp" not in values["kexalgorithms"]
    assert "sha1" not in values["macs"] and "md5" not in values["macs"]
    assert "cbc" not in values["ciphers"]
    assert values["maxstartups"] == "10:30:60"
    assert values["persourcemaxstartups"] == "4"
    assert values["allowtcpforwarding"] == ("local" if role == "controller" else "no")


def test_ipv6_admin_cidrs_get_their_own_rule() -> None:
    rules = admin_ssh_rules(["203.0.113.0/24", "2001:db8:7::/48", "198.51.100.7/32"], 22)
    assert rules == [
        "ip saddr { 203.0.113.0/24, 198.51.100.7/32 } tcp dport 22 accept",
        "ip6 saddr { 2001:db8:7::/48 } tcp dport 22 accept",
    ]
    assert admin_ssh_rules(["2001:db8::/32"], 2222) == [
        "ip6 saddr { 2001:db8::/32 } tcp dport 2222 accept"]


def _findmnt(what: str, target: str) -> str:
    return subprocess.run(["findmnt", "-n", "-o", what, "--target", target], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_database_files_live_on_the_volume(tmp_path: Path) -> None:
    for program in ("mkfs.ext4", "blkid", "findmnt", "runuser"):
        require_executable(program, "/usr/sbin", "/sbin")
    require_executable("postgres", "/usr/lib/postgresql/15/bin")
    with daemons.state_directory() as root, loop_device(tmp_path / "pgdata.img", 64) as device:
        settings = daemons.loopback_controller_settings(root)
        paths = settings.paths
        volume = _file(data_volume_commands(settings), "gemnar-data-volume")
        script = daemons.write_file(root / "gemnar-data-volume", volume.content, 0o755)
        Path(paths.fstab_file).parent.mkdir(parents=True, exist_ok=True)
        Path(paths.fstab_file).write_text("# test fstab\n")
        mount_point = paths.block_storage_mount
        try:
            first = subprocess.run([str(script), device], capture_output=True, text=True,
                                   check=False)
            assert first.returncode == 0, first.stderr
            assert _findmnt("SOURCE", mount_point) == device
            uuid = _findmnt("UUID", mount_point)
            assert Path(paths.fstab_file).read_text().count(f"UUID={uuid} {mount_point} ") == 1
            with daemons.running_postgres(settings):
                daemons.psql(settings, "create table kept (v text)")
                daemons.psql(settings, "insert into kept values ('on the volume')")
                data_dir = daemons.psql(settings, "show data_directory")
                relation = daemons.psql(settings, "select pg_relation_filepath('kept')")
            assert _findmnt("SOURCE", data_dir) == device
            assert _findmnt("SOURCE", str(Path(data_dir) / relation)) == device
            # Unmounted and run again (a reboot, a re-attach): mounted, never reformatted.
            subprocess.run(["umount", mount_point], check=True)
            assert not (Path(data_dir) / "PG_VERSION").exists()
            again = subprocess.run([str(script), device], capture_output=True, text=True,
                                   check=False)
            assert again.returncode == 0, again.stderr
            assert _findmnt("UUID", mount_point) == uuid
            assert Path(paths.fstab_file).read_text().count(f"UUID={uuid} ") == 1
            with daemons.running_postgres(settings):
                assert daemons.psql(settings, "select v from kept") == "on the volume"
        finally:
            subprocess.run(["umount", mount_point], check=False, capture_output=True)


def test_volume_with_a_foreign_filesystem_is_left_alone(tmp_path: Path) -> None:
    for program in ("mkswap", "blkid"):
        require_executable(program, "/usr/sbin", "/sbin")
    with daemons.state_directory() as root, loop_device(tmp_path / "other.img", 16) as device:
        settings = daemons.loopback_controller_settings(root)
        Path(settings.paths.fstab_file).parent.mkdir(parents=True, exist_ok=True)
        Path(settings.paths.fstab_file).write_text("")
        subprocess.run(["mkswap", device], check=True, capture_output=True)
        volume = _file(data_volume_commands(settings), "gemnar-data-volume")
        script = daemons.write_file(root / "gemnar-data-volume", volume.content, 0o755)
        result = subprocess.run([str(script), device], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 1
        assert "holds swap, expected ext4; not touching it" in result.stderr
        assert subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device],
                              capture_output=True, text=True).stdout.strip() == "swap"
