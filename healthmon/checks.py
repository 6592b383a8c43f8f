"""Rise/fall health state of load-balancer members: a pure state machine.

A member is marked down after ``fall`` consecutive failed probes and up again after ``rise``
consecutive good ones, as HAProxy does, so one slow answer does not flap the upstream list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Thresholds:
    rise: int = 2
    fall: int = 2

    def __post_init__(self) -> None:
        if self.rise < 1 or self.fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got rise={self.rise} fall={self.fall}")


@dataclass(frozen=True)
class MemberHealth:
    """What the monitor knows of one member. New members start healthy: they joined the
    load balancer only after their readiness check passed."""

    address: str
    healthy: bool = True
    streak: int = 0  # consecutive probes that disagree with ``healthy``
    last_error: str = ""


def observe(member: MemberHealth, ok: bool, error: str, limits: Thresholds) -> MemberHealth:
    """The member's state after one probe result."""
    if ok == member.healthy:
        return replace(member, streak=0, last_error="" if ok else error)
    streak = member.streak + 1
    needed = limits.rise if ok else limits.fall
    if streak >= needed:
        return MemberHealth(member.address, healthy=ok, streak=0, last_error=error)
    return replace(member, streak=streak, last_error=error)


def reconcile(
    known: dict[str, MemberHealth], addresses: list[str]
) -> dict[str, MemberHealth]:
    """Keep the state of members still listed, add new ones, forget removed ones."""
    return {address: known.get(address, MemberHealth(address)) for address in addresses}
