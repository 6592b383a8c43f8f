"""Connection arithmetic for PostgreSQL behind PgBouncer: pure, from workers and concurrency.

Every worker opens at most ``app_concurrency`` client connections to PgBouncer. PgBouncer turns
them into server connections to PostgreSQL, never more than the server budget:
``max_connections`` minus PostgreSQL's superuser slots minus a reserve for admin, backups and
monitoring (which connect to PostgreSQL directly). ``max_connections`` is sized to the demand at
``max_workers`` but capped by the plan's memory, since each backend costs memory.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPERUSER_RESERVED = 3
MIN_MAX_CONNECTIONS = 20
MAX_MAX_CONNECTIONS = 1000
# Roughly what one busy backend costs; keeps a small plan from promising 500 connections.
MB_PER_CONNECTION = 16
# Clients beyond the workers: pgbouncer's admin console, the health monitor, migrations.
CLIENT_HEADROOM = 20
RESERVE_POOL_CAP = 5
MIN_POOL_CAP = 5


@dataclass(frozen=True)
class PoolPlan:
    """PostgreSQL and PgBouncer connection limits that fit together."""

    max_connections: int
    superuser_reserved: int
    admin_reserve: int
    default_pool_size: int
    min_pool_size: int
    reserve_pool_size: int
    max_db_connections: int
    max_user_connections: int
    max_client_conn: int

    @property
    def server_budget(self) -> int:
        """Server connections PgBouncer may hold in total."""
        return self.max_connections - self.superuser_reserved - self.admin_reserve

    def server_connections(self, workers: int, app_concurrency: int) -> int:
        """The most server connections PgBouncer opens when ``workers`` are all busy."""
        return min(
            workers * app_concurrency,
            self.default_pool_size + self.reserve_pool_size,
            self.max_db_connections,
            self.max_user_connections,
        )


def connection_cap(memory_mb: int) -> int:
    """The largest ``max_connections`` the plan's memory supports."""
    return max(MIN_MAX_CONNECTIONS, min(MAX_MAX_CONNECTIONS, memory_mb // MB_PER_CONNECTION))


def plan_pools(
    max_workers: int,
    app_concurrency: int,
    memory_mb: int,
    admin_reserve: int = 10,
    superuser_reserved: int = SUPERUSER_RESERVED,
) -> PoolPlan:
    """Limits for ``max_workers`` workers of ``app_concurrency`` connections each."""
    if max_workers < 1 or app_concurrency < 1:
        raise ValueError("max_workers and app_concurrency must be at least 1")
    if admin_reserve < 0 or superuser_reserved < 0:
        raise ValueError("reserves cannot be negative")
    demand = max_workers * app_concurrency
    reserved = superuser_reserved + admin_reserve
    cap = connection_cap(memory_mb)
    if cap - reserved < 2:
        raise ValueError(
            f"memory_mb={memory_mb} allows {cap} connections, "
            f"not enough beyond the {reserved} reserved"
        )
    max_connections = min(cap, max(demand + reserved, MIN_MAX_CONNECTIONS))
    budget = max_connections - reserved
    # The reserve pool absorbs bursts without ever pushing the total past the budget.
    reserve_pool_size = min(RESERVE_POOL_CAP, budget // 10)
    default_pool_size = budget - reserve_pool_size
    return PoolPlan(
        max_connections=max_connections,
        superuser_reserved=superuser_reserved,
        admin_reserve=admin_reserve,
        default_pool_size=default_pool_size,
        min_pool_size=min(MIN_POOL_CAP, default_pool_size),
        reserve_pool_size=reserve_pool_size,
        max_db_connections=budget,
        max_user_connections=budget,
        max_client_conn=demand + CLIENT_HEADROOM,
    )
