"""Pool sizing holds for every worker count from 1 to max, over many plans."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.pool_sizing import connection_cap, plan_pools


@given(
    max_workers=st.integers(1, 100),
    concurrency=st.integers(1, 50),
    memory_mb=st.integers(512, 256 * 1024),
    admin_reserve=st.integers(0, 15),
)
def test_pools_never_exceed_postgres_for_any_worker_count(
    max_workers: int, concurrency: int, memory_mb: int, admin_reserve: int
) -> None:
    plan = plan_pools(max_workers, concurrency, memory_mb, admin_reserve=admin_reserve)
    assert plan.max_connections <= connection_cap(memory_mb)
    assert plan.default_pool_size >= 1
    assert plan.default_pool_size + plan.reserve_pool_size <= plan.server_budget
    assert plan.max_db_connections <= plan.server_budget
    for workers in range(1, max_workers + 1):
        demand = workers * concurrency
        used = plan.server_connections(workers, concurrency)
        # PostgreSQL keeps its superuser slots and the admin reserve free.
        assert used + plan.superuser_reserved + plan.admin_reserve <= plan.max_connections
        # Every worker can connect to PgBouncer at once.
        assert demand <= plan.max_client_conn
        # Until the budget is reached each client gets its own server connection.
        assert used == min(demand, plan.server_budget, plan.default_pool_size
                           + plan.reserve_pool_size)


def test_demand_below_the_cap_is_served_without_queueing() -> None:
    plan = plan_pools(10, 10, 16384)
    assert plan.max_connections == 100 + 3 + 10
    assert plan.server_connections(10, 10) == 100


def test_small_plan_caps_connections_by_memory() -> None:
    plan = plan_pools(40, 20, 1024)
    assert plan.max_connections == connection_cap(1024) == 64
    assert plan.server_connections(40, 20) == plan.server_budget == 64 - 13


@pytest.mark.parametrize(("workers", "concurrency"), [(0, 5), (3, 0)])
def test_rejects_empty_pools(workers: int, concurrency: int) -> None:
    with pytest.raises(ValueError):
        plan_pools(workers, concurrency, 4096)


def test_rejects_reserve_larger_than_the_plan() -> None:
    with pytest.raises(ValueError, match="reserved"):
        plan_pools(2, 2, 512, admin_reserve=40)
