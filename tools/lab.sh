#!/usr/bin/env bash
# The lab stack: the prod node path run for real on this machine (see docs/lab.md).
#   bash tools/lab.sh            # = up: builds the machine image on first use, boots the nodes
#   bash tools/lab.sh outputs    # site URL, addresses, members
#   bash tools/lab.sh destroy    # removes every machine, then the lab's network namespace
#   bash tools/lab.sh preview|refresh
#   bash tools/lab.sh shell      # a shell inside the lab's network (curl the site, ssh root@...)
# GEMNAR_LAB_STACK picks another stack name (default: lab).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${GEMNAR_LAB_STACK:-lab}"
ACTION="${1:-up}"
bash "$ROOT/tools/bootstrap.sh" lab-image
cd "$ROOT"
hypervisor() { PYTHONPATH="$ROOT" .venv/bin/python -m lab.hypervisor "$@"; }
# The deployer's artifacts are built here, where the package index is reachable: inside the
# lab's namespace (where the engine runs) there is no internet, as on a private network.
if [[ $ACTION == up ]]; then
  .venv/bin/python -m appdelivery build >/dev/null
  .venv/bin/python -m appdelivery build --ops >/dev/null
fi
# The engine runs inside the lab's namespace: only there do the lab's addresses exist.
namespace="$(hypervisor net-up --stack "$STACK")"
in_lab() { nsenter --net="/run/netns/$namespace" -- "$@"; }
case "$ACTION" in
  destroy)
    in_lab .venv/bin/python -m engine destroy --stack "$STACK"
    hypervisor destroy-all --stack "$STACK"
    ;;
  shell) in_lab "${SHELL:-/bin/bash}" ;;
  up|outputs|preview|refresh) in_lab .venv/bin/python -m engine "$ACTION" --stack "$STACK" ;;
  *) echo "usage: tools/lab.sh [up|destroy|outputs|preview|refresh|shell]" >&2; exit 2 ;;
esac
