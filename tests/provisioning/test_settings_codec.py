"""Settings survive the JSON round trip that nodes rely on."""

from __future__ import annotations

from provisioning.settings import ControllerPorts, ControllerSettings, WorkerSettings
from provisioning.settings_codec import controller_from_json, to_json, worker_from_json


def test_controller_round_trip() -> None:
    settings = ControllerSettings(
        private_address="127.9.0.1", vpc_subnet="127.9.0.0/24", memory_mb=2048, vcpus=2,
        max_workers=4, ports=ControllerPorts(https=8443), ssh_admin_cidrs=("198.51.100.0/24",),
        loopback_address="127.9.0.1", public_listen_address="127.9.0.1", nginx_user=None,
        redis_supervised="no",
    ).with_paths_under("/tmp/x")
    assert controller_from_json(to_json(settings)) == settings


def test_worker_round_trip() -> None:
    settings = WorkerSettings(
        private_address="127.9.0.10", controller_address="127.9.0.1", vpc_subnet="127.9.0.0/24",
        memory_mb=512, vcpus=1, processes=2,
    ).with_paths_under("/tmp/w")
    assert worker_from_json(to_json(settings)) == settings
