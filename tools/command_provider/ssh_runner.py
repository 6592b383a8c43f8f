"""Runs a `command:remote:Command` command over SSH with paramiko, optionally via a jump host."""

from __future__ import annotations

import io
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import paramiko
from paramiko.agent import AgentSSH

from .execution import Cancelled, CancelRegistry, CommandFailed, LineSink, RunResult, trim_output

KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.RSAKey,
    paramiko.ECDSAKey,
)
# Host key algorithms to offer so the server presents the key type `hostKey` pins.
HOST_KEY_ALGORITHMS: Mapping[str, tuple[str, ...]] = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
MAX_RETRY_DELAY = 5.0


class HostKeyMismatch(paramiko.SSHException):
    """The server's host key differs from the pinned `hostKey`; never retried."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: str = "root"
    password: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    agent_socket_path: str | None = None
    host_key: str | None = None
    dial_error_limit: int = 10
    per_dial_timeout: float = 15.0
    proxy: Endpoint | None = None

    @classmethod
    def from_connection(cls, conn: Mapping[str, Any]) -> Endpoint:
        """From a revealed `connection` (or `proxy`) input object, camelCase as on the wire."""
        proxy = conn.get("proxy")
        return cls(
            host=str(conn["host"]),
            port=int(conn.get("port") or 22),
            user=str(conn.get("user") or "root"),
            password=conn.get("password"),
            private_key=conn.get("privateKey"),
            private_key_password=conn.get("privateKeyPassword"),
            agent_socket_path=conn.get("agentSocketPath"),
            host_key=conn.get("hostKey"),
            dial_error_limit=int(conn.get("dialErrorLimit") or 10),
            per_dial_timeout=float(conn.get("perDialTimeout") or 15),
            proxy=cls.from_connection(proxy) if proxy else None,
        )


@dataclass(frozen=True)
class RemoteInvocation:
    endpoint: Endpoint
    command: str
    environment: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    display: str | None = None


def run_remote(invocation: RemoteInvocation, sink: LineSink, cancel: CancelRegistry) -> RunResult:
    with connect(invocation.endpoint, cancel) as transport:
        channel = transport.open_session(timeout=invocation.endpoint.per_dial_timeout)
        token = cancel.register(channel.close)
        try:
            channel.exec_command(_with_environment(invocation.command, invocation.environment))
            chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
            readers = [
                threading.Thread(target=_pump, args=(stream, name, chunks[name], sink))
                for name, stream in (
                    ("stdout", channel.makefile("rb")),
                    ("stderr", channel.makefile_stderr("rb")),
                )
            ]
            for reader in readers:
                reader.start()
            if invocation.stdin:
                channel.sendall(invocation.stdin.encode())
            channel.shutdown_write()
            status = channel.recv_exit_status()
            for reader in readers:
                reader.join()
        finally:
            cancel.unregister(token)
            channel.close()
    stdout = trim_output("".join(chunks["stdout"]))
    stderr = trim_output("".join(chunks["stderr"]))
    if cancel.cancelled:
        raise Cancelled("the command was cancelled")
    if status != 0:
        raise CommandFailed(status, stdout, stderr, invocation.display)
    return RunResult(stdout, stderr)


def _with_environment(command: str, environment: Mapping[str, str]) -> str:
    # Upstream uses SSH `env` requests, which sshd drops unless AcceptEnv allows them; exporting
    # in the command line works with any POSIX login shell.
    exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in environment.items())
    return exports + command


def _pump(stream: paramiko.ChannelFile, name: str, into: list[str], sink: LineSink) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        into.append(line)
        sink(name, line.rstrip("\n"))


@contextmanager
def connect(endpoint: Endpoint, cancel: CancelRegistry) -> Iterator[paramiko.Transport]:
    """An authenticated transport to `endpoint`, tunnelled through its proxy if it has one."""
    if endpoint.proxy is None:
        transport = _dial_with_retries(endpoint, cancel, _tcp_socket)
        try:
            yield transport
        finally:
            transport.close()
        return
    with connect(endpoint.proxy, cancel) as jump:

        def through_jump(target: Endpoint) -> Any:
            return jump.open_channel(
                "direct-tcpip",
                (target.host, target.port),
                ("127.0.0.1", 0),
                timeout=target.per_dial_timeout,
            )

        transport = _dial_with_retries(endpoint, cancel, through_jump)
        try:
            yield transport
        finally:
            transport.close()


def _tcp_socket(endpoint: Endpoint) -> socket.socket:
    return socket.create_connection((endpoint.host, endpoint.port), endpoint.per_dial_timeout)


def _dial_with_retries(
    endpoint: Endpoint, cancel: CancelRegistry, open_socket: Callable[[Endpoint], Any]
) -> paramiko.Transport:
    attempt = 0
    while True:
        attempt += 1
        if cancel.cancelled:
            raise Cancelled("the operation was cancelled")
        try:
            return _dial(endpoint, open_socket(endpoint))
        except HostKeyMismatch:
            raise
        except (OSError, EOFError, paramiko.SSHException) as error:
            # A negative limit means retry forever, as upstream.
            if 0 <= endpoint.dial_error_limit <= attempt:
                raise ConnectionError(
                    f"dialing {endpoint.user}@{endpoint.host}:{endpoint.port} failed "
                    f"after {attempt} attempt(s): {error}"
                ) from error
            time.sleep(min(float(attempt), MAX_RETRY_DELAY))


def _dial(endpoint: Endpoint, sock: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = endpoint.per_dial_timeout
        transport.auth_timeout = endpoint.per_dial_timeout
        expected = _parse_host_key(endpoint.host_key) if endpoint.host_key else None
        if expected is not None:
            algorithms = HOST_KEY_ALGORITHMS.get(expected[0], (expected[0],))
            transport.get_security_options().key_types = algorithms
        transport.start_client(timeout=endpoint.per_dial_timeout)
        if expected is not None:
            _verify_host_key(endpoint, transport.get_remote_server_key(), expected)
        _authenticate(endpoint, transport)
        return transport
    except BaseException:
        transport.close()
        raise


def _parse_host_key(text: str) -> tuple[str, str]:
    # Accepts "type base64 [comment]" as in authorized_keys / `ssh-keyscan` output, with or
    # without a leading host name column.
    fields = text.split()
    for i, word in enumerate(fields[:-1]):
        if word.startswith(("ssh-", "ecdsa-", "sk-")):
            return word, fields[i + 1]
    raise ValueError("hostKey is not in 'type base64' form")


def _verify_host_key(endpoint: Endpoint, key: paramiko.PKey, expected: tuple[str, str]) -> None:
    if (key.get_name(), key.get_base64()) != expected and key.get_base64() != expected[1]:
        raise HostKeyMismatch(
            f"host key of {endpoint.host}:{endpoint.port} is {key.get_name()} "
            f"{key.get_base64()}, not the pinned hostKey"
        )


def _authenticate(endpoint: Endpoint, transport: paramiko.Transport) -> None:
    errors: list[str] = []
    if endpoint.private_key:
        pkey = load_private_key(endpoint.private_key, endpoint.private_key_password)
        with suppress(paramiko.AuthenticationException):
            transport.auth_publickey(endpoint.user, pkey)
        if transport.is_authenticated():
            return
        errors.append("publickey")
    if endpoint.password is not None:
        with suppress(paramiko.AuthenticationException):
            transport.auth_password(endpoint.user, endpoint.password)
        if transport.is_authenticated():
            return
        errors.append("password")
    socket_path = endpoint.agent_socket_path or os.environ.get("SSH_AUTH_SOCK")
    if socket_path:
        for key in _agent_keys(socket_path):
            with suppress(paramiko.AuthenticationException):
                transport.auth_publickey(endpoint.user, key)
            if transport.is_authenticated():
                return
        errors.append("agent")
    raise paramiko.AuthenticationException(
        f"ssh: unable to authenticate as {endpoint.user}, attempted methods "
        f"[{', '.join(errors) or 'none'}]"
    )


def load_private_key(text: str, password: str | None) -> paramiko.PKey:
    """A private key from PEM or OpenSSH text (ed25519, RSA or ECDSA)."""
    problems: list[str] = []
    for key_class in KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=password)
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError) as error:
            problems.append(f"{key_class.__name__}: {error}")
    raise paramiko.SSHException("cannot parse privateKey: " + "; ".join(problems))


class _SocketAgent(AgentSSH):
    def __init__(self, path: str) -> None:
        super().__init__()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        self._connect(sock)


def _agent_keys(path: str) -> tuple[paramiko.PKey, ...]:
    try:
        return tuple(_SocketAgent(path).get_keys())
    except OSError:
        return ()
