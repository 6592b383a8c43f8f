"""A real S3-compatible server for tests: moto's server on a free loopback port.

``s3_server()`` starts ``python -m moto.server`` (PyPI ``moto[server]``, pinned) as a child
that dies with the test process, waits until it answers an S3 request, yields its endpoint and
stops it. What it was checked for (tests/backups/test_s3_server.py): multipart uploads with
SHA-256 checksums (full and composite), paginated listing, batch deletion, ranged reads. What it
does not do: it accepts an upload whose declared checksum is wrong (so the backup code verifies
every upload itself), and it keeps everything in memory (keep test data to tens of MB).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.children import die_with_parent
from tests.support.net import free_port
from tests.support.tooling import missing
from tests.support.waiting import wait_until

HOST = "127.0.0.1"
# moto accepts any credentials; these only have to be non-empty.
ACCESS_KEY = "gemnar-test-access"
SECRET_KEY = "gemnar-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running S3 server and the credentials it accepts."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path
    access_key: str = field(default=ACCESS_KEY)
    secret_key: str = field(default=SECRET_KEY, repr=False)
    region: str = REGION

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _ready(server: S3Server, deadline: float) -> None:
    import botocore.exceptions

    client = server.client()

    def answers() -> bool:
        with contextlib.suppress(botocore.exceptions.EndpointConnectionError,
                                 botocore.exceptions.ConnectionClosedError):
            client.list_buckets()
            return True
        return False

    wait_until(answers, timeout_s=max(0.0, deadline - time.monotonic()), interval_s=0.1,
               what=f"moto server answering at {server.endpoint}",
               abort=lambda: None if server.proc.poll() is None else "moto server exited",
               detail=lambda: server.log.read_text()[-2000:])


@contextlib.contextmanager
def s3_server(timeout: float = 30.0) -> Iterator[S3Server]:
    """Start an S3 server on a free loopback port; stopped (and its log removed) on exit."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing("moto's S3 server (PyPI moto[server])")
    log_dir = Path(tempfile.mkdtemp(prefix="gemnar-s3-"))
    log = log_dir / "moto.log"
    port = free_port(HOST)
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    server = S3Server(f"http://{HOST}:{port}", proc, log)
    try:
        _ready(server, time.monotonic() + timeout)
        yield server
    finally:
        server.stop()
        log.unlink(missing_ok=True)
        log_dir.rmdir()
