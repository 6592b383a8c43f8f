"""Pure pieces of the lab's scaling reaction: when the workers' memory crossed the threshold,
cloud-init's own timestamps, and the split of one scale-out on the lab stack from the crossing
to the new worker serving through Nginx.

No clock, no machine: ``bench.lab_reaction`` gathers the instants (every one read from the same
kernel clock: lab machines are containers on this host), these functions order them, and
``tests/bench/test_lab_phases.py`` checks them with tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# cloud-init's stages in the order they run (``/var/lib/cloud/data/status.json``, ``v1``).
CLOUD_INIT_STAGES = ("init-local", "init", "modules-config", "modules-final")


@dataclass(frozen=True)
class Crossing:
    """When the fleet's memory reading went above the up threshold, as measured.

    ``at`` is the earliest instant a reading above it is known: the end of the first scrape
    of the workers' exporters that read it above, or the scaler's deciding tick if that came
    first (the tick's own scrape read it above too). ``after`` is the start of the last scrape
    that still read it below: the crossing lies between the two."""

    at: float
    after: float

    @property
    def window_s(self) -> float:
        return self.at - self.after


def crossing(last_below_started: float, first_above_ended: float,
             decided_at: float) -> Crossing:
    """The crossing from the scrapes around it and the scaler's deciding tick."""
    if not last_below_started < first_above_ended:
        raise ValueError(f"the scrape below ({last_below_started}) must start before the one "
                         f"above ends ({first_above_ended})")
    if decided_at < last_below_started:
        raise ValueError(f"the scaler decided ({decided_at}) before the readings crossed "
                         f"(below at {last_below_started})")
    return Crossing(at=min(first_above_ended, decided_at), after=last_below_started)


@dataclass(frozen=True)
class CloudInitRun:
    """When cloud-init started its first stage and finished its last, and its errors."""

    started_at: float
    finished_at: float
    errors: tuple[str, ...]


def cloud_init_run(status_json: str) -> CloudInitRun:
    """cloud-init's own account of its run from ``status.json``: a stage that did not run has
    no ``start``; the run is unfinished (an error) until ``modules-final`` has finished."""
    v1 = json.loads(status_json)["v1"]
    starts = [float(v1[s]["start"]) for s in CLOUD_INIT_STAGES
              if isinstance(v1.get(s), dict) and v1[s].get("start")]
    final = v1.get("modules-final") or {}
    if not starts or not final.get("finished"):
        raise ValueError("cloud-init has not finished its final stage (status.json)")
    errors = tuple(str(e) for s in CLOUD_INIT_STAGES
                   for e in ((v1.get(s) or {}).get("errors") or []))
    return CloudInitRun(min(starts), float(final["finished"]), errors)


@dataclass(frozen=True)
class LabPhases:
    """Seconds of each part of a lab scale-out, in order; they add up to the whole."""

    detection_s: float          # crossing -> the scaler's deciding tick
    engine_before_machine_s: float  # decision -> the machine's create command starts
    boot_s: float               # create command -> cloud-init's first stage starts
    cloud_init_s: float         # cloud-init's first stage start -> its final stage done
    delivery_s: float           # cloud-init done -> readiness check starts (first-boot wait,
    #                             secrets, app over SSH)
    readiness_s: float          # the worker's readiness check and its gate
    membership_s: float         # readiness -> update done (or serving, if earlier)
    joining_nginx_s: float      # update done -> first answer through Nginx (0 if earlier)

    @property
    def total_s(self) -> float:
        return sum(vars(self).values())


def _name(event: Mapping[str, Any]) -> str:
    return str(event.get("urn", "")).rsplit("::", 1)[-1]


def lab_phases(crossed_at: float, decided_at: float, events: Sequence[Mapping[str, Any]],
               worker: str, cloud_init: CloudInitRun, serving_at: float) -> LabPhases:
    """Split a lab scale-out of ``worker`` (e.g. ``gemnar-worker-2``) by the scaler's update
    events (``scaler/apply.py``: each with its arrival time ``at``), cloud-init's own
    timestamps inside the new machine, and the first answer from it through Nginx."""
    machine = [float(e["at"]) for e in events if e.get("kind") == "resource_pre_event"
               and _name(e) == f"{worker}-machine"]
    if not machine:
        raise ValueError(f"no create step for {worker}-machine in the update's events")
    ready = [e for e in events if _name(e).startswith(f"{worker}-ready")]
    ready_start = min((float(e["at"]) for e in ready if e.get("kind") == "resource_pre_event"),
                      default=None)
    ready_end = max((float(e["at"]) for e in ready if e.get("kind") == "res_outputs_event"),
                    default=None)
    if ready_start is None or ready_end is None:
        raise ValueError(f"no complete readiness step for {worker} in the update's events")
    done = max(float(e["at"]) for e in events)
    order = [crossed_at, decided_at, machine[0], cloud_init.started_at, cloud_init.finished_at,
             ready_start, ready_end]
    if order != sorted(order):
        raise ValueError(f"the scale-out's instants are out of order: {order}")
    return LabPhases(
        detection_s=decided_at - crossed_at,
        engine_before_machine_s=machine[0] - decided_at,
        boot_s=cloud_init.started_at - machine[0],
        cloud_init_s=cloud_init.finished_at - cloud_init.started_at,
        delivery_s=ready_start - cloud_init.finished_at,
        readiness_s=ready_end - ready_start,
        # The membership step runs inside the update: the worker may serve before it ends.
        membership_s=max(0.0, min(done, serving_at) - ready_end),
        joining_nginx_s=max(0.0, serving_at - max(done, ready_end)),
    )
