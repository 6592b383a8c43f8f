#!/usr/bin/env bash
# Idempotent bootstrap shared by both README commands.
#
# Installs what the local stack and the tests need and makes the Pulumi engine available:
#   1. Debian packages (PostgreSQL, PgBouncer, Redis, Nginx, node exporter, OpenSSH, ...);
#   2. the project virtualenv (.venv) from requirements.txt;
#   3. the Pulumi CLI, built from Go modules and cached outside the repo by version;
#   4. the `command` resource provider plugin, registered in the project's own Pulumi home.
# A second run only checks stamps and finishes in seconds.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${GEMNAR_TOOLS_CACHE:-$HOME/.cache/gemnar/tools}"
STATE="${GEMNAR_STATE_DIR:-$ROOT/.state}"
PULUMI_VERSION="$(sed -n 's/^PULUMI_CLI_VERSION = "\(.*\)"/\1/p' "$ROOT/engine/toolchain.py")"
COMMAND_VERSION="$(sed -n 's/^COMMAND_PROVIDER_VERSION = "\(.*\)"/\1/p' "$ROOT/engine/toolchain.py")"
CLI_DIR="$CACHE/pulumi-cli-v$PULUMI_VERSION"
CLI="$CLI_DIR/bin/pulumi"
# The package manager's commands and policy file, injectable so that the tests can run the
# package step against a simulated package manager (both with and without a policy-rc.d).
APT_GET="${GEMNAR_APT_GET:-apt-get}"
DPKG_QUERY="${GEMNAR_DPKG_QUERY:-dpkg-query}"
POLICY_RC_D="${GEMNAR_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
export PULUMI_HOME="$STATE/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

APT_PACKAGES=(
  postgresql pgbouncer redis-server nginx prometheus-node-exporter
  openssh-server openssh-client cloud-init shellcheck wrk nftables openssl
  ssl-cert systemd procps iproute2 curl ca-certificates
  debootstrap systemd-container lxcfs
  testssl.sh
  prometheus prometheus-alertmanager prometheus-postgres-exporter
  prometheus-redis-exporter prometheus-nginx-exporter
  python3-psycopg2 python3-prometheus-client
)

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }
# Any failing command names itself: `set -e` alone ends the script without a word.
trap 'printf "bootstrap: error: command failed (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

install_debian_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not a shell variable
    "$DPKG_QUERY" -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    echo "Debian packages: all ${#APT_PACKAGES[@]} present"
    return
  fi
  command -v "$APT_GET" >/dev/null || die "missing packages ${missing[*]} and no $APT_GET"
  step "Installing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="${GEMNAR_SUDO-sudo}"
  # policy-rc.d keeps the packaged daemons from starting system-wide: the local stack and the
  # tests run their own instances on loopback addresses and must not collide with these.
  local policy=$POLICY_RC_D created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
    # Also when apt-get fails: a policy left behind would keep every daemon installed later
    # from starting, long after this script is forgotten.
    # shellcheck disable=SC2064  # expanded now: the locals are gone when the trap runs
    trap "$sudo rm -f $(printf %q "$policy")" EXIT
  fi
  $sudo "$APT_GET" update -q
  DEBIAN_FRONTEND=noninteractive $sudo "$APT_GET" install -y -q --no-install-recommends "${missing[@]}"
  if ((created_policy)); then $sudo rm -f "$policy"; trap - EXIT; fi
}

create_virtualenv() {
  local python="${GEMNAR_PYTHON:-python3}"
  command -v "$python" >/dev/null || die "no $python: install Python 3.11 or newer"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$python is $("$python" --version 2>&1); Python 3.11 or newer is required"
  [[ -x $ROOT/.venv/bin/python ]] || { step "Creating .venv"; "$python" -m venv "$ROOT/.venv"; }
  local want have
  want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  have="$(cat "$ROOT/.venv/.requirements.sha256" 2>/dev/null || true)"
  if [[ $want == "$have" ]]; then
    echo "Python packages: up to date with requirements.txt"
    return
  fi
  step "Installing Python packages from requirements.txt"
  "$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$want" >"$ROOT/.venv/.requirements.sha256"
}

pulumi_version_of() { "$1" version 2>/dev/null | tr -d '[:space:]' || true; }

provide_pulumi_cli() {
  if [[ -x $CLI && $(pulumi_version_of "$CLI") == "v$PULUMI_VERSION" ]]; then
    echo "Pulumi CLI: v$PULUMI_VERSION cached at $CLI_DIR"
    return
  fi
  mkdir -p "$CLI_DIR/bin"
  local on_path
  on_path="$(command -v pulumi || true)"
  if [[ -n $on_path ]]; then
    local found
    found="$(pulumi_version_of "$on_path")"
    if [[ $found == "v$PULUMI_VERSION" ]]; then
      echo "Pulumi CLI: using installed $on_path ($found)"
      ln -sf "$on_path" "$CLI"
      return
    fi
    echo "Pulumi CLI: ignoring $on_path (${found:-unknown version}); this project pins v$PULUMI_VERSION"
  fi
  command -v go >/dev/null || die "no Pulumi CLI v$PULUMI_VERSION and no Go toolchain to build it.
  Either install Pulumi v$PULUMI_VERSION (https://www.pulumi.com/docs/install/) so that
  'pulumi version' prints v$PULUMI_VERSION, or install Go 1.26+ and run this again."
  local build="$CACHE/build/pulumi-cli-v$PULUMI_VERSION"
  step "Building the Pulumi CLI v$PULUMI_VERSION from Go modules (first run only; ~10 min on 2 cores)"
  mkdir -p "$build"
  cp "$ROOT/tools/go/pulumi-cli/go.mod" "$ROOT/tools/go/pulumi-cli/go.sum" \
    "$ROOT/tools/go/pulumi-cli/tools.go" "$build/"
  # The version variable must be injected: without it `pulumi version` prints nothing and the
  # Automation API treats the CLI as too old.
  (cd "$build" && go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$CLI.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  mv "$CLI.tmp" "$CLI"
  echo "Pulumi CLI: built $("$CLI" version)"
}

register_command_provider() {
  mkdir -p "$STATE/plugins" "$PULUMI_HOME"
  local launcher="$STATE/plugins/pulumi-resource-command"
  sed -e "s|@PYTHON@|$ROOT/.venv/bin/python|g" -e "s|@ROOT@|$ROOT|g" \
    "$ROOT/tools/pulumi-resource-command.in" >"$launcher.new"
  chmod +x "$launcher.new"
  local installed="$PULUMI_HOME/plugins/resource-command-v$COMMAND_VERSION/pulumi-resource-command"
  if [[ -f $installed ]] && cmp -s "$launcher.new" "$installed"; then
    rm -f "$launcher.new"
    echo "command provider: v$COMMAND_VERSION registered"
    return
  fi
  mv "$launcher.new" "$launcher"
  step "Registering the command provider stand-in as resource plugin command v$COMMAND_VERSION"
  "$CLI" plugin rm resource command "$COMMAND_VERSION" --yes >/dev/null 2>&1 || true
  "$CLI" plugin install resource command "$COMMAND_VERSION" --file "$launcher"
}

main() {
  case "${1:-all}" in
    all)
      step "Bootstrap (cache: $CACHE, state: $STATE)"
      install_debian_packages
      create_virtualenv
      provide_pulumi_cli
      register_command_provider
      echo "bootstrap: ready"
      ;;
    # Single steps, used by the tests of the error paths.
    packages) install_debian_packages ;;
    cli) provide_pulumi_cli ;;
    # The lab stack's machine image (Debian's packages, cached by package list; minutes once).
    lab-image)
      main all
      step "Lab machine image"
      PYTHONPATH="$ROOT" "$ROOT/.venv/bin/python" -m lab.hypervisor image
      ;;
    *) die "usage: bootstrap.sh [all|packages|cli|lab-image]" ;;
  esac
}

main "$@"
