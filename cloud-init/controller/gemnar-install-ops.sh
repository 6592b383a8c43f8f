#!/bin/bash
# gemnar-install-ops BUNDLE SHA256 PULUMI_CLI [NAME:VERSION...]: install what the controller's
# health monitor
# and scaler run, as pushed over SSH by the deploy:
#   - the project at the deployed revision, in its own release under @{releases_dir}, with a
#     virtualenv built from the bundle's wheels (--no-index: no package index needed);
#   - the pinned Pulumi CLI v@{cli_version} at @{cli_path};
#   - the provider plugins in @{pulumi_home}: each NAME:VERSION the official way
#     (`pulumi plugin install`, where the controller reaches the internet: Vultr), and the
#     command provider from the release (the project's stand-in) unless it is among them.
# Then @{project_dir} points at the release and the health monitor restarts. Idempotent.
set -euo pipefail
bundle="${1:?usage: gemnar-install-ops BUNDLE SHA256 PULUMI_CLI}"
expected="${2:?usage: gemnar-install-ops BUNDLE SHA256 PULUMI_CLI}"
cli="${3:?usage: gemnar-install-ops BUNDLE SHA256 PULUMI_CLI}"
shift 3
fetch="$*"
releases='@{releases_dir}'
project_dir='@{project_dir}'
python='@{python}'
export PULUMI_HOME='@{pulumi_home}'
export PULUMI_SKIP_UPDATE_CHECK=true

@{unpack_release}

unpack_release gemnar-install-ops "$bundle" "$expected" "$releases" gemnar-ops- "$python" \
    project/.venv

install -d -m 0755 "$(dirname '@{cli_path}')"
if ! cmp -s "$cli" '@{cli_path}'; then
    install -m 0755 "$cli" '@{cli_path}.new'
    mv -f '@{cli_path}.new' '@{cli_path}'
fi
found="$('@{cli_path}' version)"
if [ "$found" != 'v@{cli_version}' ]; then
    echo "gemnar-install-ops: the Pulumi CLI says $found, expected v@{cli_version}" >&2
    exit 1
fi

install -d -m 0700 "$PULUMI_HOME"
if [[ " $fetch " != *" command:"* ]]; then
    launcher="$release/pulumi-resource-command"
    sed -e "s|@PYTHON@|$project_dir/.venv/bin/python|g" -e "s|@ROOT@|$project_dir|g" \
        "$release/project/tools/pulumi-resource-command.in" >"$launcher"
    chmod 0755 "$launcher"
    '@{cli_path}' plugin rm resource command '@{command_version}' --yes >/dev/null 2>&1 || true
    '@{cli_path}' plugin install resource command '@{command_version}' --file "$launcher" \
        >/dev/null
fi
for plugin in $fetch; do
    '@{cli_path}' plugin install resource "${plugin%%:*}" "${plugin#*:}" >/dev/null
done
# The Pulumi home lives in the scaler's state directory, which belongs to the scaler's dynamic
# user once it has run: systemd re-chowns it only when its top level has the wrong owner, so
# the plugins this root script just wrote take that owner here.
chown -R --reference="$(dirname "$PULUMI_HOME")" "$PULUMI_HOME"

ln -sfn "$release/project" "$project_dir.new"
mv -Tf "$project_dir.new" "$project_dir"
echo "gemnar-install-ops: $(basename "$release") installed; $found"
if command -v systemctl >/dev/null && systemctl is-enabled --quiet gemnar-healthmon.service; then
    systemctl restart gemnar-healthmon.service
fi
