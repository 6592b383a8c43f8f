"""Pure node-provisioning renderers: settings in, text out, for cloud-init and the local stack."""

from provisioning.cloud_config import controller_user_data, worker_user_data
from provisioning.settings import (
    ControllerPaths,
    ControllerPorts,
    ControllerSettings,
    DatabaseNames,
    WorkerPaths,
    WorkerPorts,
    WorkerSettings,
)

__all__ = [
    "ControllerPaths",
    "ControllerPorts",
    "ControllerSettings",
    "DatabaseNames",
    "WorkerPaths",
    "WorkerPorts",
    "WorkerSettings",
    "controller_user_data",
    "worker_user_data",
]
