"""A local-platform stack's working directory and machine-generated secrets.

The committed ``Pulumi.local.yaml`` holds only settings. Pulumi writes a stack's encryption
salt and its encrypted secrets into the stack's config file, so local stacks run from a working
directory under the project's state instead: a copy of ``Pulumi.yaml`` plus a stack file that
merges the committed settings with what was generated on this machine (the secret seed and the
SSH key pair Pulumi uses to reach the local nodes). The repository never receives either.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from engine.toolchain import PROJECT_ROOT


def stack_platform(stack_name: str, project_dir: Path = PROJECT_ROOT) -> str:
    """``gemnar:platform`` of the stack file in ``project_dir`` ("" when there is none)."""
    committed = project_dir / f"Pulumi.{stack_name}.yaml"
    if not committed.exists():
        return ""
    config = (yaml.safe_load(committed.read_text()) or {}).get("config", {})
    return str(config.get("gemnar:platform", ""))


def is_local_stack(stack_name: str, project_dir: Path = PROJECT_ROOT) -> bool:
    # The lab platform's machines are this machine's too: same generated seed and key pair.
    return stack_platform(stack_name, project_dir) in ("local", "lab")


def merged_stack_file(
    committed: dict[str, Any], previous: dict[str, Any], existing: dict[str, Any]
) -> dict[str, Any]:
    """The working stack file after a sync (pure).

    A key edited in the committed file since the last sync takes the committed value; every
    other key keeps its working value, so what the scaler or an operator set there with
    ``pulumi config set`` (``gemnar:workerCount``, ...) survives, as do generated secrets and
    the encryption salt. Keys new in the committed file are added.
    """
    now, before = committed.get("config", {}), previous.get("config", {})
    config = dict(existing.get("config", {}))
    for key, value in now.items():
        if key not in config or before.get(key) != value:
            config[key] = value
    merged = {k: v for k, v in existing.items() if k != "config"}
    merged["config"] = config
    return merged


def prepare_work_dir(
    stack_name: str, state_dir: Path, project_dir: Path = PROJECT_ROOT,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Create or refresh ``<state>/work/<stack>`` and return it."""
    work = state_dir / "work" / stack_name
    work.mkdir(parents=True, exist_ok=True)
    # The stack file holds the generated seed and SSH private key, encrypted under a
    # passphrase everyone knows (the README's): only this user may read the directory.
    work.chmod(0o700)
    shutil.copyfile(project_dir / "Pulumi.yaml", work / "Pulumi.yaml")
    committed_path = project_dir / f"Pulumi.{stack_name}.yaml"
    committed = yaml.safe_load(committed_path.read_text()) if committed_path.exists() else {}
    committed = dict(committed or {})
    if overrides:
        committed["config"] = {**committed.get("config", {}), **overrides}
    target = work / f"Pulumi.{stack_name}.yaml"
    snapshot = work / f".committed.{stack_name}.yaml"
    existing = yaml.safe_load(target.read_text()) if target.exists() else {}
    previous = yaml.safe_load(snapshot.read_text()) if snapshot.exists() else {}
    merged = merged_stack_file(committed, previous or {}, existing or {})
    target.write_text(yaml.safe_dump(merged, sort_keys=True))
    target.chmod(0o600)
    snapshot.write_text(yaml.safe_dump(committed, sort_keys=True))
    return work


def _ssh_key_pair() -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gemnar-local", "-f", str(key)],
            check=True,
        )
        return key.read_text(), key.with_suffix(".pub").read_text().strip()


def ensure_generated_secrets(stack: auto.Stack) -> list[str]:
    """Generate the seed and SSH key pair once per stack; return the keys that were set."""
    config = stack.get_all_config()

    def missing(key: str) -> bool:
        # Pulumi.yaml's defaults show up here too: an empty default is still missing.
        return key not in config or not config[key].value

    generated = []
    if missing("gemnar:secretSeed"):
        stack.set_config(
            "gemnar:secretSeed", auto.ConfigValue(secrets.token_urlsafe(48), secret=True)
        )
        generated.append("gemnar:secretSeed")
    if missing("gemnar:sshPrivateKey"):
        private, public = _ssh_key_pair()
        stack.set_config("gemnar:sshPrivateKey", auto.ConfigValue(private, secret=True))
        # Declared as array<string> in Pulumi.yaml: set it as a list, not as JSON text.
        stack.set_config("gemnar:sshPublicKeys[0]", auto.ConfigValue(public), path=True)
        generated += ["gemnar:sshPrivateKey", "gemnar:sshPublicKeys"]
    return generated


def scaler_secrets(env: dict[str, str]) -> dict[str, str]:
    """The stack secrets (``gemnar:scaler*``) whose values are in ``env``, the environment the
    controller's scaler needs (pure): the program writes them back into that environment."""
    from stack_config import SCALER_CREDENTIALS  # pure; keeps this module's imports light

    return {f"gemnar:{key}": env[name] for key, name in SCALER_CREDENTIALS.items() if name in env}


def sync_secrets(stack: auto.Stack, wanted: dict[str, str]) -> list[str]:
    """Set each secret whose value differs from ``wanted``; return the keys that were set."""
    config = stack.get_all_config()
    changed = [k for k, v in sorted(wanted.items()) if k not in config or config[k].value != v]
    for key in changed:
        stack.set_config(key, auto.ConfigValue(wanted[key], secret=True))
    return changed
