#!/bin/bash
# Install (or update) the gemnar app into its virtualenv. Also run by rolling updates with a
# new version as $1. "bundled" means the app tree is copied to the app directory over SSH.
set -euo pipefail

app_source='@{app_source}'
app_version="${1:-@{app_version}}"
app_dir='@{app_dir}'
venv_dir='@{venv_dir}'

if [ "$app_source" != bundled ]; then
    if [ -d "$app_dir/.git" ]; then
        git -C "$app_dir" fetch --depth 1 origin "$app_version"
        git -C "$app_dir" checkout --force FETCH_HEAD
    else
        rm -rf "$app_dir"
        git clone --depth 1 --branch "$app_version" "$app_source" "$app_dir"
    fi
fi
if [ ! -d "$app_dir" ]; then
    echo "app not present in $app_dir yet; it is delivered over SSH" >&2
    exit 0
fi

[ -x "$venv_dir/bin/python" ] || python3 -m venv "$venv_dir"
"$venv_dir/bin/pip" install --quiet --upgrade pip
if [ -f "$app_dir/requirements.txt" ]; then
    "$venv_dir/bin/pip" install --quiet -r "$app_dir/requirements.txt"
fi
if [ -f "$app_dir/pyproject.toml" ] || [ -f "$app_dir/setup.py" ]; then
    "$venv_dir/bin/pip" install --quiet "$app_dir"
fi
"$venv_dir/bin/pip" install --quiet 'uvicorn[standard]'
