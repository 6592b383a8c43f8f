#!/bin/bash
# gemnar-worker-roll NAME IP TIMEOUT_S RELEASE [INSTALL ARGS...]: this worker's turn in a rolling
# app update, run by Pulumi over SSH (workers one at a time, the controller's gemnar-lb-wait
# before and after each). RELEASE is what the new release's SOURCE_HASH says; the install
# arguments go to gemnar-install-app.
#   1. drain: the drain flag fails /health/, the monitor takes the worker out of Nginx, and the
#      drain waits until no connection is left on the app port;
#   2. install the release (the running one is untouched until its symlink swap);
#   3. wait until /health/ answers healthy (this also lifts the drain flag), at most TIMEOUT_S.
# A release that does not come up healthy is rolled back (the previous release again, healthy
# again), and the exit status is 1 with a message naming this worker, so the roll stops here
# and the workers after it keep the old release. Exit 0 at once when RELEASE already runs.
set -uo pipefail
name="${1:?usage: gemnar-worker-roll NAME IP TIMEOUT_S RELEASE [INSTALL ARGS...]}"
address="${2:?}"
timeout_s="${3:?}"
release="${4:?}"
shift 4
current="$(cat '@{app_dir}/../SOURCE_HASH' 2>/dev/null || true)"
if [ "$current" = "$release" ]; then
    echo "gemnar-worker-roll: ${name} already runs ${release}"
    exit 0
fi
if [ ! -f '@{secrets_env_file}' ]; then
    # A new worker: its app has not started yet (it waits for its secrets), so nothing serves
    # and there is nothing to drain; the readiness gate waits for it later.
    exec '@{install}' "$@"
fi
previous=""
if [ -e '@{app_dir}' ]; then
    previous="$(readlink -f '@{app_dir}/..')"
fi
fail() {
    echo "gemnar-worker-roll: ${name} (${address}): $*; the roll stops at ${name}" >&2
    exit 1
}
if ! '@{drain}' "$address"; then
    '@{ready}' "$address" "$timeout_s" >/dev/null
    fail "the drain failed; it still runs ${current:-no release}"
fi
if ! '@{install}' "$@"; then
    # The running release was left alone: take the worker back in with it.
    '@{ready}' "$address" "$timeout_s" >/dev/null
    fail "installing ${release} failed; it still runs ${current:-no release}"
fi
if '@{ready}' "$address" "$timeout_s"; then
    echo "gemnar-worker-roll: ${name} (${address}) runs ${release}"
    exit 0
fi
if [ -n "$previous" ] && '@{install}' "$previous" && '@{ready}' "$address" "$timeout_s"; then
    fail "not healthy on ${release} within ${timeout_s}s; rolled back to ${current}, which serves again"
fi
fail "not healthy on ${release} within ${timeout_s}s, nor after rolling back to ${current:-nothing}"
