"""The shared load GET (tests/support/resend.py) against a real socket that closes the first
connection without an answer, as an Nginx worker closing an idle kept-alive connection does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.resend import get_resending


@contextmanager
def closing_first(closes: int, answers: int) -> Iterator[str]:
    """A server whose first ``closes`` connections are closed unanswered; the next
    ``answers`` get 200."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(closes):
            unanswered, _ = server.accept()
            # Read the request first: closing with it unread makes the kernel answer with a
            # reset (a ReadError in the client, another failure), not the clean close tested.
            unanswered.recv(65536)
            unanswered.close()
        for _ in range(answers):
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                   b"Connection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=10)


def test_a_get_whose_connection_closed_is_resent_once() -> None:
    with (closing_first(closes=1, answers=1) as site,
          httpx.Client(base_url=site, timeout=10) as client):
        response, resent = get_resending(client, "/whoami/")
    assert (response.status_code, response.text, resent) == (200, "ok", True)


def test_a_second_close_is_not_hidden() -> None:
    with (closing_first(closes=2, answers=0) as site,
          httpx.Client(base_url=site, timeout=10) as client,
          pytest.raises(httpx.RemoteProtocolError)):
        get_resending(client, "/whoami/")
