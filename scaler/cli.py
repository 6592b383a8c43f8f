"""Command line: ``python -m scaler once | run | status | set-count N`` with ``--dry-run``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from scaler.actuator import StackLike, Updater, open_real_stack, repair_real_state
from scaler.runner import Collector, Scaler, print_json
from scaler.state import LockBusy, ScalerLock, StateStore
from scaler.status import render_status

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Where each tick's metrics go (node exporter's textfile directory on the controller).
METRICS_FILE_VARIABLE = "GEMNAR_SCALER_METRICS_FILE"


def default_state_dir(stack: str) -> Path:
    # The unit's StateDirectory= makes systemd set this (under /var/lib); elsewhere keep state
    # beside the project's other state, never inside a deployed checkout's tree.
    base = os.environ.get("STATE_DIRECTORY")
    return Path(base) / stack if base else PROJECT_ROOT / ".state" / "scaler" / stack


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=os.environ.get("GEMNAR_STACK", "prod"),
                        help="stack name (default: $GEMNAR_STACK or prod)")
    common.add_argument("--state-dir", type=Path, default=None,
                        help="directory for state.json and the lock (default: "
                        "$STATE_DIRECTORY/<stack> or .state/scaler/<stack>)")
    common.add_argument("--dry-run", action="store_true",
                        help="decide and log, but never change the stack or the saved state")
    common.add_argument("--timeout", type=float, default=5.0,
                        help="per-worker scrape timeout in seconds (default 5)")
    common.add_argument("--full-up", action="store_true",
                        help="run a whole-stack `up` instead of one targeted at the worker pool")
    common.add_argument("--metrics-file", type=Path, default=None,
                        help="write each tick's status as Prometheus metrics here (default: "
                        f"${METRICS_FILE_VARIABLE}; unset: none)")
    parser = argparse.ArgumentParser(prog="python -m scaler", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("once", parents=[common], help="evaluate (and act) once")
    run = commands.add_parser("run", parents=[common], help="evaluate every scaleInterval")
    run.add_argument("--once", action="store_true", help="stop after the first tick")
    commands.add_parser("status", parents=[common], help="print workers, window, next action")
    set_count = commands.add_parser(
        "set-count", parents=[common],
        help="request a worker count as a deliberate change (a new generation); then run up")
    set_count.add_argument("count", type=int)
    return parser


def main(
    argv: Sequence[str] | None = None,
    stack_factory: Callable[[str], StackLike] = open_real_stack,
    clock: Callable[[], float] = time.time,
    collector: Collector | None = None,
    updater: Updater | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    store = StateStore(args.state_dir or default_state_dir(args.stack))
    metrics = args.metrics_file or os.environ.get(METRICS_FILE_VARIABLE)
    # The project's own backend is repaired only for the project's own stacks.
    repair = repair_real_state if stack_factory is open_real_stack else None
    scaler = Scaler(args.stack, stack_factory, store, clock, dry_run=args.dry_run,
                    scrape_timeout_s=args.timeout, targeted=not args.full_up,
                    collector=collector, updater=updater,
                    metrics_file=Path(metrics) if metrics else None, repair=repair)
    if args.command == "status":
        return _status(scaler, args.stack, clock)
    if args.command == "set-count":
        return _set_count(scaler.stack, args.count)
    once = args.command == "once" or args.once
    if args.dry_run:
        # A dry run writes nothing, so it needs no lock and may run beside the real scaler.
        return _loop(scaler, once)
    lock = ScalerLock(store.directory)
    try:
        lock.acquire()
    except LockBusy as error:
        print_json({"ts": clock(), "stack": args.stack, "action": "skipped", "reason": str(error)})
        return 0
    try:
        for leftover in store.remove_leftovers():
            print_json({"ts": clock(), "note": f"removed {leftover} left by a crashed save"})
        return _loop(scaler, once)
    finally:
        lock.release()


def _loop(scaler: Scaler, once: bool) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Finish the current tick (an `up` in progress must not be torn), then leave.
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            record = scaler.tick()
            if once or stop.is_set():
                return 1 if record.get("action") in {"error", "failed"} and once else 0
            stop.wait(scaler.interval_s)
            if stop.is_set():
                return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _set_count(stack: StackLike, count: int) -> int:
    """Write the request an operator's change is: the count and the next generation."""
    from pulumi.automation import ConfigValue

    from scaler.actuator import GENERATION_CONFIG_KEY
    from scaler.config import WORKER_COUNT_KEY
    from worker_count import next_generation

    generation = next_generation(stack.outputs())
    stack.set_config(WORKER_COUNT_KEY, ConfigValue(str(count)))
    stack.set_config(GENERATION_CONFIG_KEY, ConfigValue(str(generation)))
    print_json({"action": "set-count", "stack": stack.name, "count": count,
                "generation": generation, "next": "run `up` to apply it"})
    return 0


def _status(scaler: Scaler, stack_name: str, clock: Callable[[], float]) -> int:
    state = scaler.store.load()
    seen = scaler.observe(state)
    d = seen.decision
    verdict = "hold" if not d.change else f"{d.current} -> {d.target}"
    print(render_status(stack_name, seen.settings.config, seen.current, seen.samples,
                        state, f"{verdict} [{d.rule}] {d.reason}", clock()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
