"""Registers the backup tests' fixtures and the app tests' daemons they reuse."""

from tests.app.gemnar_app_fixtures import (  # noqa: F401
    app_env,
    postgres,
    redis_server,
    workdir,
    worker_factory,
)
from tests.backups.fixtures import pgbouncer, s3, seeded  # noqa: F401
