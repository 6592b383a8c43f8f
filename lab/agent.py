"""The lab hypervisor's API: what Vultr's API is to prod, for creating and deleting machines.

Only the host can start nspawn machines, and the controller's scaler must create and delete
workers, so the program never runs the hypervisor itself: it calls this API with a token from
the stack's secrets (``gemnar:labHypervisorToken``), as prod calls Vultr's API with an API key.
One agent per lab stack, started with the namespace (``python -m lab.hypervisor net-up``),
listening only inside it, on the host's side of the public bridge (``192.0.2.1:8070``), and
serving only that stack. A request must come from the host's own address (the operator's
engine runs in the namespace) or the controller's public address, and carry the token:

    POST   /v1/machines          JSON {name, role, vpcAddress, publicAddress, memoryMb,
                                       dataDiskMb, dataDiskId, publicKeys, userData}
                                 -> 201 {"instanceId": ..., "name": ...}
    DELETE /v1/machines/<name>   -> 200 {"deleted": name} (also when there was none)
    GET    /v1/machines          -> 200 {"machines": [{"name": ...}, ...]} (every machine with
                                 a directory, half-made ones too: the stray sweep's list)

``create_spec`` and ``peer_allowed`` are pure; ``start``/``stop``/``load`` do the I/O and
``python -m lab.agent serve`` is the agent process (its command line names the stack directory,
so a test finds it if it were ever left behind).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import re
import secrets
import selectors
import sys
import time
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab import memory, service
from lab.netns import LabNetwork

AGENT_PORT = 8070
START_TIMEOUT_S = 30
# A machine boots to systemd's start in seconds; an image build on first use takes minutes.
CREATE_TIMEOUT_S = 900
MACHINES_PATH = "/v1/machines"
READY_LINE = b"ready\n"
_NAME = re.compile(r"controller|worker-\d{1,3}")
_DISK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_DISK_MB = 8192


def url(net: LabNetwork) -> str:
    """Where the stack's agent answers; the same from the host's engine and the controller."""
    return f"http://{net.gateway}:{AGENT_PORT}{MACHINES_PATH}"


def peer_allowed(net: LabNetwork, peer: str) -> bool:
    """Only the host's engine (the namespace's own address) and the controller may call."""
    return peer in (net.gateway, net.controller_public)


def create_spec(net: LabNetwork, body: dict[str, Any], roles: frozenset[str]) -> dict[str, Any]:
    """The machine a create request asks for, checked field by field (ValueError names the
    first bad one): a known role and name, addresses inside the stack's own subnets."""
    def field(key: str, kind: type, default: Any = None) -> Any:
        value = body.get(key, default)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{key}: expected {kind.__name__}")
        return value

    name, role = field("name", str), field("role", str)
    if not _NAME.fullmatch(name):
        raise ValueError("name: controller or worker-<n>")
    if role not in roles:
        raise ValueError(f"role: one of {sorted(roles)}")
    vpc = field("vpcAddress", str)
    if ipaddress.ip_address(vpc) not in ipaddress.ip_network(net.vpc_subnet):
        raise ValueError(f"vpcAddress: inside {net.vpc_subnet}")
    public = field("publicAddress", str, "")
    if public and (ipaddress.ip_address(public) not in ipaddress.ip_network(net.public_subnet)
                   or public == net.gateway):
        raise ValueError(f"publicAddress: inside {net.public_subnet}, not {net.gateway}")
    memory_mb = field("memoryMb", int)
    memory.check_memory_mb(memory_mb, "memoryMb")
    disk_mb = field("dataDiskMb", int, 0)
    disk_id = field("dataDiskId", str, "")
    if not 0 <= disk_mb <= MAX_DISK_MB or bool(disk_mb) != bool(disk_id) or (
            disk_id and not _DISK_ID.fullmatch(disk_id)):
        raise ValueError(f"dataDiskMb/dataDiskId: both or neither, at most {MAX_DISK_MB} MiB")
    keys = field("publicKeys", list, [])
    if not all(isinstance(k, str) and k.startswith("ssh-") and "\n" not in k for k in keys):
        raise ValueError("publicKeys: OpenSSH public keys")
    return {"name": name, "role": role, "vpc_address": vpc, "public_address": public,
            "memory_mb": memory_mb, "data_disk_mb": disk_mb, "data_disk_id": disk_id,
            "public_keys": tuple(keys),
            "user_data": field("userData", str)}


def machine_name(path: str) -> str | None:
    """The machine a DELETE names, or None when the path is not one."""
    prefix = MACHINES_PATH + "/"
    name = path[len(prefix):] if path.startswith(prefix) else ""
    return name if _NAME.fullmatch(name) else None


@dataclass(frozen=True)
class AgentRecord:
    address: str
    port: int
    token: str
    pid: int = 0


def _record_path(stack_dir: Path) -> Path:
    # Root only (service.save_record): it holds the token.
    return stack_dir / "agent" / "agent.json"


def load(stack_dir: Path) -> AgentRecord | None:
    return service.load_record(_record_path(stack_dir), AgentRecord)


def start(net: LabNetwork, stack_dir: Path) -> AgentRecord:
    """Start the stack's agent (a running one is kept); returns once it listens."""
    from localnode.supervise import alive

    running = load(stack_dir)
    if running is not None and alive(running.pid):
        return running
    directory = _record_path(stack_dir).parent
    directory.mkdir(parents=True, exist_ok=True)
    record = AgentRecord(address=net.gateway, port=AGENT_PORT,
                         token=running.token if running else secrets.token_urlsafe(32))
    service.save_record(_record_path(stack_dir), record)
    process = service.spawn(
        net, ["lab.agent", "serve", "--stack", net.stack, "--vpc-subnet", net.vpc_subnet,
              "--stack-dir", str(stack_dir)], directory / "agent.log", stdout_pipe=True)
    record = AgentRecord(**{**asdict(record), "pid": process.pid})
    service.save_record(_record_path(stack_dir), record)
    assert process.stdout is not None
    # The agent writes one line once its socket listens: wait for that line, bounded.
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT_S) and process.stdout.readline() == READY_LINE
    process.stdout.close()
    if not ready:
        stop(stack_dir)
        tail = (directory / "agent.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the lab's hypervisor agent did not start at {url(net)}:\n{tail}")
    return record


def stop(stack_dir: Path) -> None:
    """Stop the stack's agent and forget it; idempotent."""
    service.retire(_record_path(stack_dir))


class _Handler(BaseHTTPRequestHandler):
    server: _AgentServer

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if not peer_allowed(self.server.net, self.client_address[0]):
            self._reply(HTTPStatus.FORBIDDEN, {"error": "not from the host or the controller"})
            return False
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "bad token"})
            return False
        return True

    def _on_machines(self) -> bool:
        """An authorized request for the machine collection; anything else is answered."""
        if not self._authorized():
            return False
        if self.path != MACHINES_PATH:
            self._reply(HTTPStatus.NOT_FOUND, {"error": self.path})
            return False
        return True

    def do_POST(self) -> None:
        if not self._on_machines():
            return
        from lab import image, machine

        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            spec = create_spec(self.server.net, body, frozenset(image.ROLE_PACKAGES))
        except (ValueError, TypeError) as error:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        role = spec.pop("role")
        lower = image.lower_dirs(image.default_spec(service.PROJECT_ROOT), role)
        state = machine.create(self.server.net, self.server.stack_dir, lower,
                               machine.MachineSpec(**spec))
        self._reply(HTTPStatus.CREATED, {"instanceId": state.instance_id, "name": state.name})

    def do_GET(self) -> None:
        if not self._on_machines():
            return
        from lab import machine

        names = machine.names(self.server.stack_dir)
        self._reply(HTTPStatus.OK, {"machines": [{"name": name} for name in names]})

    def do_DELETE(self) -> None:
        if not self._authorized():
            return
        name = machine_name(self.path)
        if name is None:
            self._reply(HTTPStatus.NOT_FOUND, {"error": self.path})
            return
        from lab import machine

        machine.delete(self.server.net, self.server.stack_dir, name)
        self._reply(HTTPStatus.OK, {"deleted": name})

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.client_address[0]} "
                         f"{format % args}\n")


class _AgentServer(ThreadingHTTPServer):
    def __init__(self, net: LabNetwork, stack_dir: Path, token: str) -> None:
        self.net, self.stack_dir, self.token = net, stack_dir, token
        super().__init__((net.gateway, AGENT_PORT), _Handler)


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.agent serve")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--vpc-subnet", required=True)
    parser.add_argument("--stack-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    record = load(args.stack_dir)
    if record is None:
        sys.exit(f"no agent record in {args.stack_dir}")
    server = _AgentServer(LabNetwork(stack=args.stack, vpc_subnet=args.vpc_subnet),
                          args.stack_dir, record.token)
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.flush()
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: python -m lab.agent serve --stack S --vpc-subnet CIDR --stack-dir D")
    serve(sys.argv[2:])
