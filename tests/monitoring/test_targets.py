"""Prometheus's worker targets follow the membership; the monitor's view is exported as metrics.

The membership step (``apply_membership``, i.e. ``gemnar-lb-apply``) and the monitor's rounds
run with the real upstream renderer and the real target renderer against files in a temp
directory; Nginx's commands and the probes are the fakes of ``tests/healthmon/test_monitor``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from healthmon.metrics import HEALTH_METRICS_NAME, certificate_expiry
from healthmon.monitor import Monitor, MonitorConfig, apply_membership
from provisioning.monitoring import WORKER_APP_FILE, WORKER_NODE_FILE, worker_target_files
from provisioning.settings import MonitoringSettings
from tests.healthmon.test_monitor import FakeNginx, Probes, render
from tests.support.tooling import require_executable

A, B, C = "10.20.0.11:8000", "10.20.0.12:8000", "10.20.0.13:8000"
MONITORING = MonitoringSettings()


def config(tmp_path: Path) -> MonitorConfig:
    return MonitorConfig(
        membership_file=tmp_path / "members.json",
        upstream_file=tmp_path / "upstream.conf",
        lock_file=tmp_path / "membership.lock",
        reload_argv=("nginx", "-s", "reload"),
        test_argv=("nginx", "-t"),
        status_file=tmp_path / "health.json",
        targets_dir=tmp_path / "targets",
        render_targets=lambda members: worker_target_files(members, MONITORING),
        metrics_dir=tmp_path / "textfile",
    )


def targets(cfg: MonitorConfig, name: str) -> list[str]:
    assert cfg.targets_dir is not None
    groups = json.loads((cfg.targets_dir / name).read_text())
    return [t for g in groups for t in g["targets"]]


def test_targets_follow_every_membership_change(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    nginx = FakeNginx()
    for members in ([A, B], [A, B, C], [A, B], []):
        apply_membership(cfg, members, render, nginx)
        hosts = [m.split(":")[0] for m in members]
        assert targets(cfg, WORKER_NODE_FILE) == [f"{h}:9100" for h in hosts]
        assert targets(cfg, WORKER_APP_FILE) == [f"{h}:9101" for h in hosts]


def test_an_unhealthy_worker_stays_a_target(tmp_path: Path) -> None:
    """Health takes a worker out of Nginx, not out of Prometheus: its series show why."""
    cfg = config(tmp_path)
    nginx, probes = FakeNginx(), Probes(down={A})
    apply_membership(cfg, [A, B], render, nginx)
    mon = Monitor(cfg, render, probes, nginx)
    for _ in range(3):
        asyncio.run(mon.tick())
    assert f"server {A} " in cfg.upstream_file.read_text()
    assert " down;" in cfg.upstream_file.read_text()
    assert targets(cfg, WORKER_APP_FILE) == ["10.20.0.11:9101", "10.20.0.12:9101"]
    assert cfg.metrics_dir is not None
    families = {f.name: f for f in text_string_to_metric_families(
        (cfg.metrics_dir / HEALTH_METRICS_NAME).read_text())}
    healthy = {s.labels["worker"]: s.value for s in families["gemnar_worker_healthy"].samples}
    assert healthy == {"10.20.0.11": 0, "10.20.0.12": 1}
    assert families["gemnar_lb_members"].samples[0].value == 2


def test_the_monitor_writes_missing_targets_from_the_membership(tmp_path: Path) -> None:
    """A controller upgraded to monitoring gets targets without a membership change."""
    cfg = config(tmp_path)
    nginx = FakeNginx()
    apply_membership(replace(cfg, targets_dir=None), [A], render, nginx)
    assert cfg.targets_dir is not None and not cfg.targets_dir.exists()
    asyncio.run(Monitor(cfg, render, Probes(), nginx).tick())
    assert targets(cfg, WORKER_NODE_FILE) == ["10.20.0.11:9100"]


def test_promtool_accepts_the_target_files(tmp_path: Path) -> None:
    """Prometheus's own loader reads the files (promtool check config resolves file_sd)."""
    promtool = require_executable("promtool")
    for name, text in worker_target_files([A, B], MONITORING).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "prometheus.yml").write_text(
        "scrape_configs:\n- job_name: node\n  file_sd_configs:\n"
        f"  - files: ['{tmp_path}/{WORKER_NODE_FILE}', '{tmp_path}/{WORKER_APP_FILE}']\n")
    result = subprocess.run([str(promtool), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 65535)), max_size=8))
def test_target_files_list_each_member_host_once_in_order(members: list[tuple[int, int]]) -> None:
    addresses = [f"10.1.0.{host}:{port}" for host, port in members]
    files = worker_target_files(addresses, MONITORING)
    hosts = list(dict.fromkeys(a.split(":")[0] for a in addresses))
    for name, port in ((WORKER_NODE_FILE, 9100), (WORKER_APP_FILE, 9101)):
        groups = json.loads(files[name])
        assert [g["targets"] for g in groups] == [[f"{h}:{port}"] for h in hosts]
        assert [g["labels"]["worker"] for g in groups] == hosts


def test_certificate_expiry_is_read_from_the_pem(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "site")])
    not_after = datetime(2031, 5, 1, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(not_after - timedelta(days=90)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "fullchain.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    assert certificate_expiry(path) == not_after.timestamp()
    assert certificate_expiry(tmp_path / "missing.pem") is None
