"""The sshd hardening drop-in every node runs (prod cloud-init, lab, local nodes alike).

Algorithm lists are the intersection of what Debian 12's OpenSSH 9.2 offers and what
ssh-audit 3.9 passes: the sntrup761 hybrid and curve25519 for key exchange (no NIST ECDH, no
finite-field groups), AEAD and CTR ciphers, encrypt-then-MAC SHA-2 / UMAC-128 MACs (no SHA-1).
The controller forwards TCP because it is the jump host for the workers; workers do not.
"""

from __future__ import annotations

from provisioning.templates import render

KEX = (
    "sntrup761x25519-sha512@openssh.com",
    # Not post-quantum (ssh-audit warns): kept because paramiko, which the command provider
    # uses to reach every node, has no sntrup761 and OpenSSH 9.2 has no mlkem768x25519.
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
# ssh-audit's warnings that stay, each for the compatibility reason given above.
DOCUMENTED_WARNINGS = (
    "curve25519-sha256: does not provide protection against post-quantum attacks",
    "curve25519-sha256@libssh.org: does not provide protection against post-quantum attacks",
)
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
# start:rate:full — beyond 10 unauthenticated connections drop 30 % more, refuse all at 60.
MAX_STARTUPS = "10:30:60"
PER_SOURCE_MAX_STARTUPS = 4
DROPIN_NAME = "10-gemnar.conf"


def render_sshd_hardening(*, jump_host: bool) -> str:
    """The drop-in's text; ``jump_host`` allows TCP forwarding (the controller)."""
    return render(
        "common/sshd-gemnar.conf",
        kex=",".join(KEX),
        ciphers=",".join(CIPHERS),
        macs=",".join(MACS),
        host_key_algorithms=",".join(HOST_KEY_ALGORITHMS),
        max_startups=MAX_STARTUPS,
        per_source_max_startups=PER_SOURCE_MAX_STARTUPS,
        forwarding=(
            "# The jump host for the workers: forwarding only, no remote listeners.\n"
            "AllowTcpForwarding local\nGatewayPorts no"
            if jump_host
            else "AllowTcpForwarding no"
        ),
    )
