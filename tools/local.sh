#!/usr/bin/env bash
# The README's main command: bootstrap, then bring the `local` stack up (or act on it).
#   bash tools/local.sh            # = up: the whole architecture on this machine, prints the URL
#   bash tools/local.sh destroy    # stops every local node and removes them from the stack
#   bash tools/local.sh preview|refresh|outputs
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/python -m engine "${1:-up}" --stack local
