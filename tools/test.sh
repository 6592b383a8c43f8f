#!/usr/bin/env bash
# The README's test command: bootstrap, lint and type-check, then the whole test suite.
# Every daemon the tests need (PostgreSQL, PgBouncer, Redis, Nginx, sshd, node exporter, the
# local stack's nodes) is started by the tests themselves on loopback and stopped after them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
