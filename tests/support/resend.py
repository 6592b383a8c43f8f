"""A GET as a browser sends it through Nginx: resent once when the connection closed under it.

Old Nginx workers close idle kept-alive connections on a reload; a request that went out on
one just then fails with ``RemoteProtocolError``, and browsers resend an idempotent request
in that case (RFC 9110, 9.2.2). The e2e steady load and the bench's episode load both do.
"""

from __future__ import annotations

import httpx


def get_resending(client: httpx.Client, path: str) -> tuple[httpx.Response, bool]:
    """The response to GET ``path`` and whether it had to be resent."""
    try:
        return client.get(path), False
    except httpx.RemoteProtocolError:
        return client.get(path), True
