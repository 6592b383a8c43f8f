#!/bin/bash
# gemnar-install-app [ARTIFACT SHA256 | VERSION | RELEASE_DIR]: install (or update) the app and
# point @{app_dir} and @{venv_dir} at it, then restart the app if its secrets are already in
# place. An installed release directory (under @{releases_dir}) is switched back to as it is.
#   bundled:  ARTIFACT is a tarball pushed over SSH (app/, wheels/, requirements.txt); the
#             venv is built from its wheels with --no-index: no package index is needed.
#   git URL:  VERSION must be a tag or a full commit id, never a branch: a branch moves, and
#             a replaced worker would silently run other code than its peers.
# Without an argument (first boot) there is nothing to install yet: the deploy's roll names
# the release (components/app_roll.py), so the user data carries no version and a new one
# rolls through the workers instead of replacing them.
# Each release lives in its own directory under @{releases_dir}, keyed by content; switching
# is a symlink swap, so a failed install leaves the running release alone.
set -euo pipefail
app_source='@{app_source}'
releases='@{releases_dir}'
app_dir='@{app_dir}'
venv_dir='@{venv_dir}'
python='@{python}'

@{unpack_release}

install -d -m 0755 "$releases"
if [ -n "${1:-}" ] && [ -d "$1" ] && [ -e "$1/.installed" ]; then
    # An installed release directory: switch back to it (gemnar-worker-roll's rollback).
    release="$1"
elif [ "$app_source" = bundled ]; then
    artifact="${1:-}"
    if [ -z "$artifact" ]; then
        echo "gemnar-install-app: no artifact yet; it is pushed over SSH by the deploy"
        exit 0
    fi
    expected="${2:?usage: gemnar-install-app ARTIFACT SHA256}"
    unpack_release gemnar-install-app "$artifact" "$expected" "$releases" gemnar-app- \
        "$python" venv
else
    app_version="${1:-}"
    if [ -z "$app_version" ]; then
        echo "gemnar-install-app: no version yet; the deploy's roll installs it"
        exit 0
    fi
    if [[ ! "$app_version" =~ ^[0-9a-f]{40}$ ]] && [[ ! "$app_version" =~ ^v?[0-9][A-Za-z0-9._-]*$ ]]; then
        echo "gemnar-install-app: appVersion '$app_version' is neither a tag (v1.2.3) nor a" \
            "full commit id; refusing a branch that can move" >&2
        exit 1
    fi
    release="$releases/git-$app_version"
    if [ ! -e "$release/.installed" ]; then
        rm -rf "$release"
        install -d -m 0755 "$release/app"
        git -C "$release/app" init --quiet
        if [[ "$app_version" =~ ^[0-9a-f]{40}$ ]]; then
            git -C "$release/app" fetch --quiet --depth 1 "$app_source" "$app_version"
        else
            # Only the tag: a branch of the same name is never fetched.
            git -C "$release/app" fetch --quiet --depth 1 "$app_source" \
                "refs/tags/$app_version:refs/tags/$app_version"
        fi
        git -C "$release/app" checkout --quiet --detach FETCH_HEAD
        # What the app reports as its release (a bundled artifact carries its own).
        echo "git-$app_version" > "$release/SOURCE_HASH"
        "$python" -m venv "$release/venv"
        if [ -f "$release/app/requirements.txt" ]; then
            "$release/venv/bin/pip" install --quiet -r "$release/app/requirements.txt"
        fi
        touch "$release/.installed"
    fi
fi

ln -sfn "$release/app" "$app_dir.new"
mv -Tf "$app_dir.new" "$app_dir"
ln -sfn "$release/venv" "$venv_dir.new"
mv -Tf "$venv_dir.new" "$venv_dir"
echo "gemnar-install-app: $(basename "$release") installed"
if [ -f '@{secrets_env_file}' ] && command -v systemctl >/dev/null; then
    systemctl restart gemnar-app.service
fi
