"""The lab's S3-compatible server: what Vultr Object Storage is to prod, inside the lab network.

One server per lab stack, on its own address on the lab's "public" bridge (never in the root
namespace), holding the stack's Pulumi state (the engine logs in to
``s3://gemnar-lab-state?endpoint=...&s3ForcePathStyle=true`` as an operator logs in to Vultr
Object Storage), the media bucket and the off-site backups. ``tools/lab.sh`` starts it with the
namespace (``python -m lab.hypervisor net-up``) and ``destroy`` removes it with the namespace.

The server is moto's (PyPI ``moto[server]``, already the tests' S3 server). It keeps
everything in memory: the stack's state lives as long as the server process, i.e. from
``net-up`` until ``destroy`` (or until this machine restarts). docs/lab.md says why not SeaweedFS.
moto accepts any credentials; the stack still gets keys of its own, handed on exactly as
Vultr's ``ObjectStorage`` hands its ``s3_access_key``/``s3_secret_key`` out, so the path that
carries them is the prod one.

``LabS3`` and ``plan`` are pure; ``start``/``stop``/``load`` do the I/O. ``python -m lab.s3
serve`` is the server process itself (its command line names the stack directory, so a test can
find it if it were ever left behind).
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import netns, service
from lab.netns import LabNetwork
from localnode.supervise import alive

# 192.0.2.2 in the lab: the address the "object storage" answers on (the namespace is .1).
S3_HOST_INDEX = 2
# A fixed port is fine: the address exists only in this stack's own namespace.
S3_PORT = 9000
REGION = "us-east-1"
STATE_BUCKET = "gemnar-lab-state"
MEDIA_BUCKET = "gemnar-lab-media"
BUCKETS = (STATE_BUCKET, MEDIA_BUCKET)
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class LabS3:
    """Where one lab stack's S3 server answers and the keys it hands out (pure)."""

    address: str
    port: int
    access_key: str
    secret_key: str
    region: str = REGION
    state_bucket: str = STATE_BUCKET
    media_bucket: str = MEDIA_BUCKET
    pid: int = 0

    @property
    def hostname(self) -> str:
        """``host:port``, as Vultr's ``s3_hostname`` (``ams1.vultrobjects.com``) is a host."""
        return f"{self.address}:{self.port}"

    @property
    def endpoint(self) -> str:
        # Plain HTTP: the lab has no certificate authority its machines trust.
        return f"http://{self.hostname}"

    @property
    def backend_url(self) -> str:
        """The Pulumi state backend, as prod's docs/prod.md login plus ``disable_https``."""
        return (f"s3://{self.state_bucket}?endpoint={self.hostname}"
                "&disable_https=true&s3ForcePathStyle=true")

    def backend_env(self) -> dict[str, str]:
        """Environment for a Pulumi CLI (or engine) using this stack's state in the lab's S3."""
        return {
            "PULUMI_BACKEND_URL": self.backend_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def description(self) -> dict[str, str]:
        """What the program receives (``python -m lab.hypervisor object-storage``): the
        fields of Vultr's ``ObjectStorage`` outputs plus the lab's media bucket."""
        return {
            "s3Hostname": self.hostname,
            "s3Endpoint": self.endpoint,
            "s3AccessKey": self.access_key,
            "s3SecretKey": self.secret_key,
            "region": self.region,
            "mediaBucket": self.media_bucket,
            "stateBackendUrl": self.backend_url,
        }


def plan(net: LabNetwork, access_key: str, secret_key: str) -> LabS3:
    return LabS3(address=net.public_host(S3_HOST_INDEX), port=S3_PORT,
                 access_key=access_key, secret_key=secret_key)


def s3_dir(stack_dir: Path) -> Path:
    return stack_dir / "s3"


def _record(stack_dir: Path) -> Path:
    return s3_dir(stack_dir) / "endpoint.json"


def load(stack_dir: Path) -> LabS3 | None:
    """The running server's record, or None when this stack has none."""
    return service.load_record(_record(stack_dir), LabS3)


def _save(stack_dir: Path, server: LabS3) -> None:
    # The keys are the stack's state credentials: root only.
    service.save_record(_record(stack_dir), server)


def _client(net: LabNetwork, server: LabS3, script: str, timeout: float = 30) -> str:
    """Run a boto3 ``script`` (``c`` is the client) inside the lab namespace; its stdout."""
    prelude = (
        "import boto3, botocore.config\n"
        f"c = boto3.client('s3', endpoint_url={server.endpoint!r}, "
        f"aws_access_key_id={server.access_key!r}, aws_secret_access_key={server.secret_key!r}, "
        f"region_name={server.region!r}, config=botocore.config.Config("
        "s3={'addressing_style': 'path'}, retries={'max_attempts': 1}, connect_timeout=2, "
        "read_timeout=10))\n"
    )
    done = netns.run_inside(net, [sys.executable, "-c", prelude + script],
                            capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"S3 request to {server.endpoint} failed: {done.stderr[-2000:]}")
    return done.stdout


def answers(net: LabNetwork, server: LabS3) -> bool:
    try:
        _client(net, server, "c.list_buckets()", timeout=15)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def start(net: LabNetwork, stack_dir: Path) -> LabS3:
    """Start the stack's server (idempotent: a running one is kept) with its buckets."""
    running = load(stack_dir)
    if running is not None and alive(running.pid) and answers(net, running):
        return running
    if running is not None:
        stop(stack_dir)
    directory = s3_dir(stack_dir)
    directory.mkdir(parents=True, exist_ok=True)
    server = plan(net, secrets.token_hex(10), secrets.token_urlsafe(30))
    netns.add_address(net, server.address)
    process = service.spawn(
        net, ["lab.s3", "serve", "--address", server.address, "--port", str(server.port),
              "--stack-dir", str(stack_dir)], directory / "server.log")
    server = LabS3(**{**asdict(server), "pid": process.pid})
    _save(stack_dir, server)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(net, server):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(stack_dir)
            tail = (directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the lab's S3 server did not answer at {server.endpoint}:\n{tail}")
        # Nothing to wait on but the socket; bounded by the deadline.
        time.sleep(0.3)
    buckets = ", ".join(repr(b) for b in BUCKETS)
    _client(net, server, f"for b in ({buckets},):\n    c.create_bucket(Bucket=b)\n")
    return server


def stop(stack_dir: Path) -> None:
    """Stop the stack's server and forget it; idempotent."""
    service.retire(_record(stack_dir))


def serve(argv: list[str] | None = None) -> None:
    """The server process: moto's S3 server bound to the lab address."""
    parser = argparse.ArgumentParser(prog="python -m lab.s3 serve")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    # Only so that the process can be told apart (tests look for leftovers by this path).
    parser.add_argument("--stack-dir", required=True)
    args = parser.parse_args(argv)
    from moto.server import main as moto_main

    moto_main(["-H", args.address, "-p", str(args.port)])


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: python -m lab.s3 serve --address A --port P --stack-dir D")
    serve(sys.argv[2:])
