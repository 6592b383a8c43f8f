"""Host secrets: derived from the stack's secret seed, delivered over SSH into root-only files.

Why derive: no extra provider plugin (``random``) is available, and a deterministic derivation
keeps previews stable. Every value is HMAC-SHA256(seed, purpose), hex encoded, so each purpose
gets an independent secret and rotating the seed rotates all of them.

Why SSH and not user data: any process on a Vultr instance can read its user data from the
metadata service, so secrets never go there. The command writes the node's secrets file (mode
0600, root; workers: ``WorkerPaths.app_secrets_env_file``, controller: ``controller.env`` in
``ControllerPaths.secrets_dir``) from stdin, then runs ``/usr/local/sbin/gemnar-apply-secrets``
if cloud-init has installed it and the content changed since it last succeeded (see
``write_script``). Contract for the provisioning side: services that need a secret
read that file (systemd ``EnvironmentFile=``) and tolerate it appearing after boot; the hook
applies new values (role passwords, Redis ``requirepass``, starting the app) idempotently.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from components.component import Component, Outputs
from components.node_command import OnNode, on_node
from components.nodes import as_root
from provisioning.monitoring import WEBHOOK_ENV
from provisioning.pgbouncer import ADMIN_VERIFIER_ENV
from provisioning.scram import scram_sha256_verifier
from stack_config import StackConfig

APPLY_HOOK = "/usr/local/sbin/gemnar-apply-secrets"

# Environment name -> derivation purpose. Renaming a purpose rotates that secret.
CONTROLLER_SECRETS = {
    "GEMNAR_DB_PASSWORD": "postgres-app-password",
    "GEMNAR_REDIS_PASSWORD": "redis-password",
    # Redis's ACL user for the Prometheus exporter (provisioning.redis.EXPORTER_USER).
    "GEMNAR_REDIS_EXPORTER_PASSWORD": "redis-exporter-password",
    "GEMNAR_SECRET_KEY": "django-secret-key",
}
# What a worker's secrets file is rendered from (provisioning.app_env names the variables).
WORKER_SECRETS = {
    "db_password": "postgres-app-password",
    "redis_password": "redis-password",
    "secret_key": "django-secret-key",
}


# PgBouncer's admin console password: backup.env holds the password (restore --swap logs in
# with it), controller.env only its SCRAM verifier, which gemnar-apply-secrets writes into
# PgBouncer's auth file beside the app role's.
PGBOUNCER_ADMIN_PURPOSE = "pgbouncer-admin-password"


def derive_secret(seed: str, purpose: str) -> str:
    """A 64-hex-character secret for ``purpose``, deterministic in ``seed`` (pure)."""
    return hmac.new(seed.encode(), f"gemnar/{purpose}".encode(), hashlib.sha256).hexdigest()


def pgbouncer_admin_verifier(seed: str) -> str:
    """The SCRAM verifier of the admin console password (pure). Its salt is derived from the
    seed as well, so an unchanged seed gives an unchanged controller.env and no re-apply."""
    salt = bytes.fromhex(derive_secret(seed, "pgbouncer-admin-salt"))[:16]
    return scram_sha256_verifier(derive_secret(seed, PGBOUNCER_ADMIN_PURPOSE), salt)


def controller_secret_env(seed: str) -> dict[str, str]:
    """Everything ``controller.env`` holds that is secret, by variable name (pure)."""
    return {
        **{env: derive_secret(seed, purpose) for env, purpose in CONTROLLER_SECRETS.items()},
        ADMIN_VERIFIER_ENV: pgbouncer_admin_verifier(seed),
    }


def webhook_url(cfg: StackConfig) -> str:
    """Alertmanager's webhook URL from the stack's secret config, or empty."""
    return cfg.alert_webhook_url.value if cfg.alert_webhook_url else ""


def controller_secret_values(
    seed: pulumi.Output[str], webhook_url: str = ""
) -> dict[str, pulumi.Output[str]]:
    """``controller_secret_env`` as secret Outputs (the seed Output must already be secret),
    with Alertmanager's webhook URL, a stack secret of its own (empty: none)."""
    values = seed.apply(controller_secret_env)

    def one(name: str) -> pulumi.Output[str]:
        return values.apply(lambda every: every[name])

    derived = {name: one(name) for name in (*CONTROLLER_SECRETS, ADMIN_VERIFIER_ENV)}
    return {**derived, WEBHOOK_ENV: pulumi.Output.secret(webhook_url)}


def derive_secrets(
    seed: pulumi.Output[str], names: Mapping[str, str]
) -> dict[str, pulumi.Output[str]]:
    """Secret Outputs for each environment name; the seed Output must already be secret."""

    def one(purpose: str) -> pulumi.Output[str]:
        return seed.apply(lambda s: derive_secret(s, purpose))

    return {env: one(purpose) for env, purpose in names.items()}


def render_env_file(values: Mapping[str, str]) -> str:
    """``KEY='value'`` lines; values are hex or plain paths, quoting guards the rest."""
    lines = []
    for key, value in sorted(values.items()):
        if "'" in value or "\n" in value:
            raise ValueError(f"{key}: value cannot be written to an env file")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def write_script(path: str, hook: str = APPLY_HOOK, then: str | None = None) -> str:
    """Write stdin to ``path``; run ``hook`` (then ``then``) only if the content changed.

    Why the check: any input change re-runs this command (a rotated SSH key, another SSH user,
    a new script text), and the hook restarts services. ``<path>.applied`` holds the SHA-256 of
    the content whose hook finished, so an unchanged file restarts nothing, and a hook that
    failed runs again next time. ``then`` (e.g. "wait until healthy") makes a caller that
    chains these commands roll them one host at a time.
    """
    directory = path.rsplit("/", 1)[0]
    after = f"{then}; " if then else ""
    return (
        "set -eu; umask 077; "
        f"install -d -m 0700 -o root -g root {directory}; "
        f"cat > {path}.new; chmod 0600 {path}.new; mv -f {path}.new {path}; "
        f"sum=$(sha256sum < {path} | cut -d ' ' -f 1); "
        f'if [ "$sum" = "$(cat {path}.applied 2>/dev/null || true)" ]; then '
        "echo 'host secrets unchanged: nothing to apply'; exit 0; fi; "
        f"if [ -x {hook} ]; then {hook}; fi; "
        f"{after}"
        f'echo "$sum" > {path}.applied'
    )


@dataclass(frozen=True)
class HostSecretsArgs(OnNode):
    path: str
    # The whole file; it is made secret here whatever the caller passed.
    content: pulumi.Input[str]
    ssh_user: str = "root"
    hook: str = APPLY_HOOK
    # Run after the hook when the content changed, before the change counts as applied.
    then: pulumi.Input[str] | None = None


def env_file_content(
    secrets: Mapping[str, pulumi.Input[str]], settings: Mapping[str, pulumi.Input[str]]
) -> pulumi.Output[str]:
    """An env file of ``settings`` (non-secret) and ``secrets``, as one Output."""
    merged = {**settings, **secrets}
    keys = list(merged)
    return pulumi.Output.all(*[merged[k] for k in keys]).apply(
        lambda values: render_env_file(dict(zip(keys, values, strict=True)))
    )


class HostSecrets(Component[HostSecretsArgs]):
    """Writes a node's secrets (and a few non-secret host settings) to a root-only file."""

    path: pulumi.Output[str]

    def build(self, name: str, args: HostSecretsArgs) -> Outputs:
        then = pulumi.Output.from_input(args.then) if args.then is not None else None
        script = (
            then.apply(lambda t: as_root(write_script(args.path, args.hook, t), args.ssh_user))
            if then is not None
            else as_root(write_script(args.path, args.hook), args.ssh_user)
        )
        # A replaced machine is a new host that needs the file again.
        on_node(
            f"{name}-write", self, args,
            create=script,
            # Secrets travel on stdin only: never in the command text (upstream shows it in
            # failure messages) nor in `environment` (visible to the remote session's env).
            stdin=pulumi.Output.secret(args.content),
        )
        self.path = pulumi.Output.from_input(args.path)
        return {"path": self.path}
