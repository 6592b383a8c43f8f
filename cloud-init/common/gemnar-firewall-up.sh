#!/bin/sh
# The host firewall, loaded by each node's setup script before it starts anything that listens
# on the VPC address. Once the ruleset is loaded, the network-facing units may start, and
# packages may start their daemons again (both held back since boot: provisioning/firstboot.py).
set -eu
systemctl enable nftables
systemctl restart nftables
install -d -m 0755 "$(dirname '@{flag}')"
touch '@{flag}'
rm -f '@{policy_rc_d}'
