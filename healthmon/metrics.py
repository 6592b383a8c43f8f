"""What the health monitor knows, as Prometheus metrics and scrape targets.

Two outputs, both written only when their text changes and always whole (rename into place):

- the workers' file-based discovery files (``provisioning.monitoring.worker_target_files``),
  from the *membership*, not from health: a failing worker stays a target, so its series show
  why it fails;
- ``gemnar_health.prom`` for node exporter's textfile collector: each member's health as the
  monitor's rise/fall checks see it (``gemnar_worker_healthy``, the source of the
  worker-unhealthy alert), the fail-open state and the site certificate's expiry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509

from healthmon.checks import MemberHealth

HEALTH_METRICS_NAME = "gemnar_health.prom"


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` atomically unless it holds it already."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def write_targets(directory: Path, files: Mapping[str, str]) -> bool:
    """Write each discovery file; True if any changed."""
    changed = [write_if_changed(directory / name, text) for name, text in files.items()]
    return any(changed)


def certificate_expiry(path: Path) -> float | None:
    """The certificate's notAfter as a Unix time; None if it cannot be read."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    expiry: datetime = certificate.not_valid_after_utc
    return expiry.timestamp()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_health_metrics(
    members: Sequence[MemberHealth],
    fail_open: bool,
    down_since: Mapping[str, float],
    certificate_expiry_s: float | None,
) -> str:
    """The textfile (Prometheus text format 0.0.4). ``worker`` is the member's host, the label
    the workers' scrape targets carry too."""
    lines = [
        "# HELP gemnar_worker_healthy 1 if the worker passes the health monitor's checks.",
        "# TYPE gemnar_worker_healthy gauge",
    ]
    for member in members:
        host = member.address.rpartition(":")[0]
        lines.append(f'gemnar_worker_healthy{{worker="{_escape(host)}"}} {int(member.healthy)}')
    lines += [
        "# HELP gemnar_worker_down_since_timestamp_seconds When the worker was marked down.",
        "# TYPE gemnar_worker_down_since_timestamp_seconds gauge",
    ]
    for member in members:
        if member.address in down_since:
            host = member.address.rpartition(":")[0]
            lines.append(
                f'gemnar_worker_down_since_timestamp_seconds{{worker="{_escape(host)}"}} '
                f"{down_since[member.address]:.3f}"
            )
    lines += [
        "# HELP gemnar_lb_members Members in the load balancer.",
        "# TYPE gemnar_lb_members gauge",
        f"gemnar_lb_members {len(members)}",
        "# HELP gemnar_lb_fail_open 1 while every member is unhealthy and Nginx routes to all.",
        "# TYPE gemnar_lb_fail_open gauge",
        f"gemnar_lb_fail_open {int(fail_open)}",
    ]
    if certificate_expiry_s is not None:
        lines += [
            "# HELP gemnar_tls_certificate_expiry_timestamp_seconds The site certificate's "
            "notAfter.",
            "# TYPE gemnar_tls_certificate_expiry_timestamp_seconds gauge",
            f"gemnar_tls_certificate_expiry_timestamp_seconds {certificate_expiry_s:.0f}",
        ]
    return "\n".join(lines) + "\n"
