"""Registers the app-test fixtures defined in ``gemnar_app_fixtures``."""

from gemnar_app_fixtures import (  # noqa: F401
    app_env,
    pgbouncer,
    postgres,
    redis_server,
    workdir,
    worker_a,
    worker_b,
    worker_factory,
)
