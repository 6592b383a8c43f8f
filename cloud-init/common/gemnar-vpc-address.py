#!/usr/bin/python3
"""gemnar-vpc-address [FILE...]: find this node's address on the VPC and write it into FILEs.

Vultr assigns a node's private address, so the user data cannot carry it: the rendered
configs carry @{token} instead. This waits (up to @{timeout_s}s) until an interface holds an
IPv4 address inside @{vpc_subnet} (Vultr: configured by cloud-init from the metadata service;
lab: the NoCloud seed's static network-config), records it in @{address_file} and replaces
the token in each FILE. Runs with the system Python that cloud-init itself uses.
"""

import ipaddress
import json
import os
import subprocess
import sys
import time

SUBNET = ipaddress.IPv4Network("@{vpc_subnet}")
TOKEN = "@{token}"
ADDRESS_FILE = "@{address_file}"
TIMEOUT_S = int("@{timeout_s}")


def vpc_address():
    listing = subprocess.run(
        ["ip", "-json", "-4", "address", "show"], check=True, capture_output=True, text=True
    ).stdout
    for link in json.loads(listing):
        for entry in link.get("addr_info", []):
            address = ipaddress.IPv4Address(entry["local"])
            if address in SUBNET:
                return str(address)
    return None


def substitute(path, address):
    with open(path) as handle:
        text = handle.read()
    if TOKEN not in text:
        return
    stat = os.stat(path)
    with open(path + ".vpc-new", "w") as handle:
        handle.write(text.replace(TOKEN, address))
    os.chmod(path + ".vpc-new", stat.st_mode & 0o7777)
    os.chown(path + ".vpc-new", stat.st_uid, stat.st_gid)
    os.replace(path + ".vpc-new", path)


def main(paths):
    deadline = time.monotonic() + TIMEOUT_S
    address = vpc_address()
    while address is None:
        if time.monotonic() >= deadline:
            print(f"gemnar-vpc-address: no address in {SUBNET} after {TIMEOUT_S}s",
                  file=sys.stderr)
            return 1
        time.sleep(1)
        address = vpc_address()
    os.makedirs(os.path.dirname(ADDRESS_FILE), exist_ok=True)
    with open(ADDRESS_FILE, "w") as handle:
        handle.write(address + "\n")
    for path in paths:
        substitute(path, address)
    print(address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
