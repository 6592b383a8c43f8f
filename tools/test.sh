#!/usr/bin/env bash
# The README's test command: bootstrap, lint and type-check, then the whole test suite.
# Every daemon the tests need (PostgreSQL, PgBouncer, Redis, Nginx, sshd, node exporter, the
# local stack's nodes) is started by the tests themselves on loopback and stopped after them.
# The suite runs on GEMNAR_TEST_WORKERS processes (pytest-xdist, tests/support/parallel.py),
# 3 by default; 0 runs it in this one. Most of its time is spent waiting on real events (a
# scaler's period, a machine's boot), so groups run side by side even on two cores: three
# processes took 25 min where serial CI runs took 32-37 min on this machine (its lab stack
# modules are one group: two lab stacks coming up at once overran the engine's bound).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"

# The lab's machine image takes minutes on a cold cache (debootstrap and Debian's packages):
# build it in the background while ruff, mypy and the first tests run. The lab fixtures wait
# for it (tests/lab/conftest.py, `lab_image`) and point at this log. Where the lab cannot run
# (not root, no debootstrap) nothing starts: the lab tests say what is missing.
lab_build=""
if [[ "$(id -u)" == 0 ]] && command -v debootstrap >/dev/null; then
  export GEMNAR_LAB_IMAGE_LOG="$ROOT/.state/lab-image-build.log"
  mkdir -p "$ROOT/.state"
  # Its own process group, so that an early exit interrupts the whole build (see below).
  # shellcheck disable=SC2016  # expanded by the inner shell
  setsid bash -c 'started=$SECONDS
    PYTHONPATH="$1" "$1/.venv/bin/python" -m lab.hypervisor image
    status=$?
    echo "lab image: background build ended with status $status after $((SECONDS - started)) s"
    exit $status' _ "$ROOT" >"$GEMNAR_LAB_IMAGE_LOG" 2>&1 &
  lab_build=$!
  echo "==> lab image: building in the background if not cached (log: $GEMNAR_LAB_IMAGE_LOG)"
fi
stop_lab_build() {
  # Normally long done (the lab tests waited for it). If not (lab tests deselected, an early
  # failure), interrupt it: its Python cleans up its chroot mounts and scratch directory.
  if [[ -n "$lab_build" ]] && kill -0 "$lab_build" 2>/dev/null; then
    echo "==> lab image: interrupting the background build"
    kill -INT -- "-$lab_build" 2>/dev/null || true
    wait "$lab_build" 2>/dev/null || true
  fi
}
trap stop_lab_build EXIT

echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
workers="${GEMNAR_TEST_WORKERS:-3}"
parallel=()
if [[ "$workers" != 0 ]]; then
  parallel=(-n "$workers" --dist loadfile)
fi
.venv/bin/python -m pytest "${parallel[@]}" "$@"
