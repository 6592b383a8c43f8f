"""How the suite is split over pytest-xdist's processes (``bash tools/test.sh``: ``-n 3
--dist loadfile`` by default, ``GEMNAR_TEST_WORKERS=N`` for another number, with the
scheduler below).

Much of the suite's time is spent waiting on real events (a scaler's period, a machine's boot,
``pulumi up`` of real processes), not on the CPU, so test groups run side by side. What must
stay in one process stays in one group, handed to one worker as a whole:

- every end-to-end test of the local stack (tests/e2e): they share the session's one stack
  (``local_stack``), ordered by worker count within the process (tests/support/state_order.py);
- the two lab stack modules (``LAB_STACK_TESTS``), one after the other: two lab stacks coming
  up at once (six machines running cloud-init and pip under a loaded run) each took more than
  the engine's 6-minute bound in a CI run, where one alone takes 2-3 minutes;
- every other test module as a whole, so a module-scoped fixture (daemons, a machine) is
  brought up once and its tests keep pytest-randomly's order.

The groups are read from node ids in xdist's controller (which collects nothing): xdist's own
``xdist_group`` marks do not reach pytest 9's node ids (xdist 3.8.0 sets ``item._nodeid``,
which pytest 9 no longer reads). The longest groups are handed out first (``LONGEST``,
measured in CI runs): started last, one of them would make the run as long as the rest plus
itself. Pure apart from the scheduler class, which needs xdist.
"""

from __future__ import annotations

from typing import Any

LOCAL_STACK_GROUP = "local-stack"
LOCAL_STACK_TESTS = "tests/e2e/"
LAB_STACKS_GROUP = "lab-stacks"
LAB_STACK_TESTS = ("tests/lab/test_lab_scaler.py", "tests/lab/test_lab_stack.py")
# Groups longer than the rest, longest first (a CI run on two loaded cores, warm image cache:
# the local e2e modules ~25 min, the lab stacks ~12 min plus a cold image).
LONGEST = (LOCAL_STACK_GROUP, LAB_STACKS_GROUP)


def group_of(nodeid: str) -> str:
    """The group (work unit) of the test ``nodeid``: its module, or a shared group."""
    module = nodeid.split("::", 1)[0]
    if module.startswith(LOCAL_STACK_TESTS):
        return LOCAL_STACK_GROUP
    return LAB_STACKS_GROUP if module in LAB_STACK_TESTS else module


def longest_first(scopes: list[str]) -> list[str]:
    """``scopes`` with the ``LONGEST`` groups first (in that order); the rest keep theirs."""
    rank = {name: i for i, name in enumerate(LONGEST)}
    first = sorted((s for s in scopes if s in rank), key=rank.__getitem__)
    return first + [s for s in scopes if s not in rank]


def make_scheduler(config: Any, log: Any) -> Any:
    """xdist's file scheduler with the local stack's modules as one group, longest first."""
    from xdist.scheduler import LoadFileScheduling

    class Groups(LoadFileScheduling):  # type: ignore[misc]
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:  # the queue is complete before the first assignment
                self.ordered = True
                queue = dict(self.workqueue)
                self.workqueue.clear()
                for scope in longest_first(list(queue)):
                    self.workqueue[scope] = queue[scope]
            super()._assign_work_unit(node)

    return Groups(config, log)
