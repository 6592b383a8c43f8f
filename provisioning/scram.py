"""SCRAM-SHA-256 verifiers in PostgreSQL's stored format (RFC 5802 / RFC 7677).

The controller stores only the verifier: PostgreSQL accepts it in ``ALTER ROLE ... PASSWORD`` and
PgBouncer in its ``auth_file``, and PgBouncer reuses the client's SCRAM keys to log in to the
server, so the plain password is needed only on the workers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

DEFAULT_ITERATIONS = 4096


def scram_sha256_verifier(
    password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` for ``password``."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
