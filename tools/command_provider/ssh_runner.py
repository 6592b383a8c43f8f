"""Runs a `command:remote:Command` command over SSH with paramiko, optionally via a jump host.

Dialing, authentication and the environment follow upstream 1.2.1, read from its source
(pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go, commandOutputs.go, on
golang.org/x/crypto v0.48.0 ssh/client.go and client_auth.go), including the parts that hurt:

- `perDialTimeout` bounds only the TCP connect; the SSH handshake and the jump host's
  `direct-tcpip` open have no timeout (a stalled server stalls the operation; only Cancel here
  ends it, upstream not even that).
- Every failed attempt, authentication and host-key failures included, is retried up to
  `dialErrorLimit` times (`N` allows `N + 1` attempts, `-1` forever) with upstream's pauses:
  0.1 s growing 1.5x per attempt, at most 5 s.
- Through a jump host, the tunnel is opened once and the handshake is retried on that same
  tunnel, which the first failed handshake has closed: after one failure every later attempt
  fails with `EOF`, so a handshake hiccup after the tunnel opens is fatal.
- The agent (`agentSocketPath`, else `$SSH_AUTH_SOCK`) is connected before dialing whenever it is
  set, even with a private key, and a socket that cannot be connected fails the operation
  without retries. Its keys are offered only when no private key is given: Go's client tries
  the `publickey` method once.
- `environment` and the previous outputs travel as SSH `env` requests: a refused variable of
  `environment` fails the command, a refused `PULUMI_COMMAND_*` is a warning.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paramiko
from paramiko.agent import AgentSSH
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

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
# pulumi sdk go/common/util/retry/until.go defaults, used by upstream's dialWithRetry.
FIRST_DELAY = 0.1
BACKOFF = 1.5
MAX_DELAY = 5.0
# paramiko wants numbers for its banner/handshake/auth timeouts; upstream has none. About 4 months.
NO_TIMEOUT = 1e7
SETENV_HINT = (
    "Unable to set '{name}'. This only works if your SSH server is configured to accept "
    "these variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command on "
    "the remote host, you could prefix the command itself with the variables in the form "
    "'VAR=value command'"
)

T = TypeVar("T")


class DialError(ConnectionError):
    """Dialing failed for good (limit reached, or a failure upstream does not retry)."""


class HandshakeFailed(paramiko.SSHException):
    """The SSH handshake (key exchange, host key, authentication) failed; Go's wording."""


class SetenvRefused(paramiko.SSHException):
    """The server refused an `env` request for a variable of `environment`."""


# The provider's connection input; `duplicates` pairs its first fields with appdelivery.ssh's
# Endpoint, kept apart (see there): the stand-in plugin does not import the project's code.
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
    # Seconds for the TCP connect; 0 means no limit.
    per_dial_timeout: float = 15.0
    proxy: Endpoint | None = None

    @classmethod
    def from_connection(cls, conn: Mapping[str, Any]) -> Endpoint:
        """From a revealed `connection` (or `proxy`) input object, camelCase as on the wire."""
        proxy = conn.get("proxy")
        limit = conn.get("dialErrorLimit")
        timeout = conn.get("perDialTimeout")
        return cls(
            host=str(conn["host"]),
            port=int(conn.get("port") or 22),
            user=str(conn.get("user") or "root"),
            password=conn.get("password"),
            private_key=conn.get("privateKey"),
            private_key_password=conn.get("privateKeyPassword"),
            agent_socket_path=conn.get("agentSocketPath"),
            host_key=conn.get("hostKey"),
            dial_error_limit=10 if limit is None else int(limit),
            per_dial_timeout=15.0 if timeout is None else float(timeout),
            proxy=cls.from_connection(proxy) if proxy else None,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RemoteInvocation:
    endpoint: Endpoint
    command: str
    environment: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    # PULUMI_COMMAND_STDOUT/STDERR, only the non-empty ones (as upstream).
    previous_output: Mapping[str, str] = field(default_factory=dict)


def run_remote(invocation: RemoteInvocation, sink: LineSink, cancel: CancelRegistry) -> RunResult:
    with connect(invocation.endpoint, cancel, sink) as transport:
        channel = _session(transport, invocation, sink)
        token = cancel.register(channel.close)
        chunks: dict[str, list[str]] = {"stdout": [], "stderr": [], "both": []}
        try:
            channel.exec_command(invocation.command)
            lock = threading.Lock()
            readers = [
                threading.Thread(target=_pump, args=(stream, name, chunks, lock, sink))
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
        combined = "".join(chunks["both"])
        raise CommandFailed(
            status, stdout, stderr, _exit_reason(status), invocation.command, combined
        )
    return RunResult(stdout, stderr)


def _exit_reason(status: int) -> str:
    # Go's *ssh.ExitError / *ssh.ExitMissingError text; paramiko reports "no status" as -1.
    if status < 0:
        return "wait: remote command exited without exit status or exit signal"
    return f"Process exited with status {status}"


def _session(
    transport: paramiko.Transport, invocation: RemoteInvocation, sink: LineSink
) -> paramiko.Channel:
    channel = transport.open_session()
    accepted: dict[str, str] = {}
    for name, value in invocation.environment.items():
        if not _setenv(channel, name, value):
            sink("error", SETENV_HINT.format(name=name))
            raise SetenvRefused(f'could not set environment variable "{name}": ssh: setenv failed')
        accepted[name] = value
    for name, value in invocation.previous_output.items():
        if _setenv(channel, name, value):
            accepted[name] = value
            continue
        sink("warning", SETENV_HINT.format(name=name))
        # paramiko closes a channel whose request was refused (Go keeps it): open another one
        # and repeat what the server accepted before, so the command sees the same environment.
        channel = transport.open_session()
        for known, known_value in accepted.items():
            _setenv(channel, known, known_value)
    return channel


def _setenv(channel: paramiko.Channel, name: str, value: str) -> bool:
    """An `env` request that waits for the reply, as Go's Session.Setenv (paramiko's does not)."""
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("env")
    message.add_boolean(True)
    message.add_string(name)
    message.add_string(value)
    channel._event_pending()
    channel.transport._send_user_message(message)
    try:
        channel._wait_for_event()
    except paramiko.SSHException:
        return False
    return not channel.closed


def _pump(
    stream: paramiko.ChannelFile,
    name: str,
    chunks: dict[str, list[str]],
    lock: threading.Lock,
    sink: LineSink,
) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        with lock:
            chunks[name].append(line)
            chunks["both"].append(line)
        sink(name, line.rstrip("\n"))


@dataclass(frozen=True)
class Credentials:
    """What upstream's SSHConfig prepares before any dial: parsed key, password, agent."""

    private_key: paramiko.PKey | None
    password: str | None
    agent: AgentSSH | None
    host_key: tuple[str, str] | None

    def close(self) -> None:
        if self.agent is not None:
            self.agent._close()


def credentials(endpoint: Endpoint) -> Credentials:
    """Parse the key and connect the agent; failures here are final, never retried."""
    host_key = _parse_host_key(endpoint.host_key) if endpoint.host_key is not None else None
    private_key = (
        load_private_key(endpoint.private_key, endpoint.private_key_password)
        if endpoint.private_key is not None
        else None
    )
    socket_path = endpoint.agent_socket_path
    if socket_path is None:
        socket_path = os.environ.get("SSH_AUTH_SOCK") or None
    agent = _connect_agent(socket_path) if socket_path is not None else None
    return Credentials(private_key, endpoint.password, agent, host_key)


@contextmanager
def connect(
    endpoint: Endpoint, cancel: CancelRegistry, sink: LineSink = lambda _s, _l: None
) -> Iterator[paramiko.Transport]:
    """An authenticated transport to `endpoint`, tunnelled through its proxy if it has one."""
    target = credentials(endpoint)
    try:
        if endpoint.proxy is None:
            with closing(_retry(
                "Dial",
                endpoint.dial_error_limit,
                lambda: _handshake(endpoint, target, _tcp_socket(endpoint), cancel),
                cancel,
                sink,
            )) as transport:
                yield transport
            return
        with _through_proxy(endpoint, endpoint.proxy, target, cancel, sink) as transport:
            yield transport
    finally:
        target.close()


@contextmanager
def _through_proxy(
    endpoint: Endpoint,
    proxy: Endpoint,
    target: Credentials,
    cancel: CancelRegistry,
    sink: LineSink,
) -> Iterator[paramiko.Transport]:
    try:
        hop = credentials(proxy)
    except Exception as error:
        raise DialError(f"proxy: {error}") from error
    jump: paramiko.Transport | None = None
    try:
        jump = _proxied(
            lambda: _retry(
                "Dial proxy",
                proxy.dial_error_limit,
                lambda: _handshake(proxy, hop, _tcp_socket(proxy), cancel),
                cancel,
                sink,
            )
        )
        opened = jump
        tunnel = _proxied(
            lambda: _retry(
                "Dial from proxy",
                endpoint.dial_error_limit,
                lambda: opened.open_channel(
                    "direct-tcpip",
                    (endpoint.host, endpoint.port),
                    ("127.0.0.1", 0),
                    timeout=NO_TIMEOUT,
                ),
                cancel,
                sink,
            )
        )
        once = _SingleUseTunnel(tunnel)
        with closing(_proxied(
            lambda: _retry(
                "Dial",
                endpoint.dial_error_limit,
                lambda: once.handshake(endpoint, target, cancel),
                cancel,
                sink,
            )
        )) as transport:
            yield transport
    finally:
        if jump is not None:
            jump.close()
        hop.close()


def _proxied(step: Callable[[], T]) -> T:
    try:
        return step()
    except DialError as error:
        raise DialError(f"proxy: {error}") from error


class _SingleUseTunnel:
    """Upstream retries the handshake on the one tunnel that a failed handshake has closed."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._used = False

    def handshake(
        self, endpoint: Endpoint, creds: Credentials, cancel: CancelRegistry
    ) -> paramiko.Transport:
        if self._used:
            raise HandshakeFailed("ssh: handshake failed: EOF")
        self._used = True
        return _handshake(endpoint, creds, self._channel, cancel)


def _retry(
    what: str, limit: int, attempt: Callable[[], T], cancel: CancelRegistry, sink: LineSink
) -> T:
    """Upstream's dialWithRetry on pulumi's retry.Until: any failure is retried."""
    tries = 0
    delay = FIRST_DELAY
    while True:
        if cancel.cancelled:
            raise Cancelled("the operation was cancelled")
        try:
            return attempt()
        except Cancelled:
            raise
        except (OSError, EOFError, paramiko.SSHException) as error:
            if cancel.cancelled:
                raise Cancelled("the operation was cancelled") from error
            dials = tries + 1
            if limit > -1 and dials > limit:
                raise DialError(f"after {tries} failed attempts: {error}") from error
            shown = "inf" if limit == -1 else str(limit)
            sink("status", f"{what} {dials}/{shown} failed: retrying")
            if cancel.wait(min(delay, MAX_DELAY)):
                raise Cancelled("the operation was cancelled") from error
            delay *= BACKOFF
            tries += 1


def _tcp_socket(endpoint: Endpoint) -> socket.socket:
    timeout = endpoint.per_dial_timeout or None
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout)
    # The timeout was for the connect only (Go's net.DialTimeout); the handshake has none.
    sock.settimeout(None)
    return sock


def _handshake(
    endpoint: Endpoint, creds: Credentials, sock: Any, cancel: CancelRegistry
) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    token = cancel.register(transport.close)
    try:
        transport.banner_timeout = NO_TIMEOUT
        transport.handshake_timeout = NO_TIMEOUT
        transport.auth_timeout = NO_TIMEOUT
        if creds.host_key is not None:
            algorithms = HOST_KEY_ALGORITHMS.get(creds.host_key[0], (creds.host_key[0],))
            transport.get_security_options().key_types = algorithms
        try:
            transport.start_client()
            if creds.host_key is not None:
                _verify_host_key(transport.get_remote_server_key(), creds.host_key)
            _authenticate(endpoint.user, creds, transport)
        except HandshakeFailed:
            raise
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise HandshakeFailed(f"ssh: handshake failed: {_go_text(error)}") from error
        return transport
    except BaseException:
        transport.close()
        raise
    finally:
        cancel.unregister(token)


def _go_text(error: BaseException) -> str:
    # An EOF from the server reads "EOF" in Go; paramiko's EOFError has no message.
    return str(error) or ("EOF" if isinstance(error, EOFError) else type(error).__name__)


def _parse_host_key(text: str) -> tuple[str, str]:
    # Accepts "type base64 [comment]" as in authorized_keys / `ssh-keyscan` output, with or
    # without a leading host name column.
    fields = text.split()
    for i, word in enumerate(fields[:-1]):
        if word.startswith(("ssh-", "ecdsa-", "sk-")):
            return word, fields[i + 1]
    raise ValueError("failed to parse host key: ssh: no key found")


def _verify_host_key(key: paramiko.PKey, expected: tuple[str, str]) -> None:
    if key.get_base64() != expected[1]:
        raise HandshakeFailed("ssh: handshake failed: ssh: host key mismatch")


def _authenticate(user: str, creds: Credentials, transport: paramiko.Transport) -> None:
    """Go's clientAuthenticate: "none" first, then each configured method, each name once."""
    try:
        transport.auth_none(user)
        return
    except paramiko.BadAuthenticationType as refused:
        allowed = list(refused.allowed_types)
    except paramiko.AuthenticationException:
        allowed = []
    methods: list[tuple[str, Callable[[], None]]] = []
    if creds.private_key is not None:
        key = creds.private_key
        methods.append(("publickey", lambda: _offer_keys(transport, user, (key,))))
    if creds.password is not None:
        password = creds.password
        methods.append(("password", lambda: transport.auth_password(user, password)))
        methods.append(
            (
                "keyboard-interactive",
                lambda: transport.auth_interactive(
                    user, lambda _t, _i, prompts: [password for _ in prompts]
                ),
            )
        )
    if creds.agent is not None:
        agent = creds.agent
        # Skipped when a private key was given: "publickey" has been tried by then.
        methods.append(("publickey", lambda: _offer_keys(transport, user, agent.get_keys())))
    tried = ["none"]
    for method, attempt in methods:
        if method in tried or method not in allowed:
            continue
        tried.append(method)
        try:
            attempt()
        except paramiko.BadAuthenticationType as refused:
            allowed = list(refused.allowed_types)
        except paramiko.AuthenticationException:
            pass
        if transport.is_authenticated():
            return
    raise HandshakeFailed(
        "ssh: handshake failed: ssh: unable to authenticate, attempted methods "
        f"[{' '.join(tried)}], no supported methods remain"
    )


def _offer_keys(transport: paramiko.Transport, user: str, keys: Any) -> None:
    for key in keys:
        with suppress(paramiko.AuthenticationException):
            transport.auth_publickey(user, key)
        if transport.is_authenticated():
            return
    raise paramiko.AuthenticationException("no key was accepted")


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
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._connect(sock)


def _connect_agent(path: str) -> AgentSSH:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise DialError(f"dial unix {path}: connect: {reason}") from error
    return _SocketAgent(sock)
