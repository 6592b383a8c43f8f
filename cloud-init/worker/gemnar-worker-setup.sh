#!/bin/bash
# First-boot setup of a gemnar worker, run by cloud-init after packages and files are in place.
set -euo pipefail

# This node's VPC address into every config that binds it, before anything starts.
'@{vpc_address_script}' @{address_files}

# The host firewall before any service listens on the VPC address.
'@{firewall_up_script}'
install -d -o gemnar -g gemnar -m 0755 '@{run_dir}'
install -d -m 0700 '@{artifacts_dir}'
# The app's collectstatic writes here (its unit's ExecStartPre, as the gemnar user).
install -d -o gemnar -g gemnar -m 0755 '@{static_root}'
touch '@{app_env_file}'
'@{install_script}'
systemctl daemon-reload
# The sshd drop-in applies to new connections: reload (SIGHUP re-executes the listener) and
# leave the sessions open right now alone -- the deployer's first-boot wait is one of them.
systemctl reload-or-restart ssh
systemctl enable --now prometheus-node-exporter
systemctl restart prometheus-node-exporter
# The app starts once its secrets exist; the readiness step delivers them and starts it.
systemctl enable gemnar-app.service
