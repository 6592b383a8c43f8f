"""Reading ``GEMNAR_*`` environment variables: typed, range-checked, secrets from files.

Every reader takes the environment as a mapping and raises ``ClusterConfigError`` naming the
variable and what it accepts, so a bad deployment fails at start-up with a readable message.
``settings_helper`` builds Django settings from these readers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

PREFIX = "GEMNAR_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ClusterConfigError(ImproperlyConfigured):
    """A GEMNAR_* environment variable is missing or has a value that cannot be used."""


def raw(env: Mapping[str, str], name: str) -> str | None:
    """``GEMNAR_<name>`` stripped of surrounding blanks, or None when unset."""
    value = env.get(PREFIX + name)
    return None if value is None else value.strip()


def secret(env: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    """Read ``GEMNAR_<name>`` or the file named by ``GEMNAR_<name>_FILE`` (not both)."""
    direct = env.get(PREFIX + name)
    file_name = env.get(PREFIX + name + "_FILE")
    if direct and file_name:
        raise ClusterConfigError(f"set only one of {PREFIX}{name} and {PREFIX}{name}_FILE")
    if file_name:
        try:
            # Files written by provisioning usually end with a newline that is not the secret.
            value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ClusterConfigError(
                f"{PREFIX}{name}_FILE: cannot read {file_name}: {exc}"
            ) from exc
        if not value:
            raise ClusterConfigError(f"{PREFIX}{name}_FILE: {file_name} is empty")
        return value
    if direct:
        return direct
    if required:
        raise ClusterConfigError(f"{PREFIX}{name} (or {PREFIX}{name}_FILE) is required")
    return None


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Read a boolean ``GEMNAR_<name>``; accepts 1/0, true/false, yes/no, on/off."""
    value = raw(env, name)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ClusterConfigError(f"{PREFIX}{name}={value!r}: expected 1/0, true/false, yes/no, on/off")


def number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
) -> float:
    """Read a number ``GEMNAR_<name>`` within ``[minimum, maximum]``."""
    value = raw(env, name)
    if value is None or value == "":
        return default
    try:
        parsed = float(value)
    except ValueError as exc:
        raise ClusterConfigError(f"{PREFIX}{name}={value!r}: expected a number") from exc
    if not minimum <= parsed <= maximum:
        raise ClusterConfigError(
            f"{PREFIX}{name}={value!r}: must be between {minimum:g} and {maximum:g}"
        )
    return parsed


def integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    """Read a whole number ``GEMNAR_<name>`` within ``[minimum, maximum]``."""
    parsed = number(env, name, default, minimum=minimum, maximum=maximum)
    if parsed != int(parsed):
        raise ClusterConfigError(f"{PREFIX}{name}={parsed:g}: expected a whole number")
    return int(parsed)


def word_list(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> list[str]:
    """Read a comma- or space-separated list ``GEMNAR_<name>``."""
    value = raw(env, name)
    if value is None:
        return list(default)
    return [item for item in value.replace(",", " ").split() if item]


def required_path(env: Mapping[str, str], name: str) -> Path:
    """Read an absolute path ``GEMNAR_<name>``."""
    value = raw(env, name)
    if not value:
        raise ClusterConfigError(f"{PREFIX}{name} is required (an absolute path)")
    path = Path(value)
    if not path.is_absolute():
        raise ClusterConfigError(f"{PREFIX}{name}={value!r}: must be an absolute path")
    return path


def networks(env: Mapping[str, str], name: str) -> list[str]:
    """Read a list of IP addresses or CIDR networks, normalised to CIDR strings."""
    result: list[str] = []
    for item in word_list(env, name):
        try:
            result.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ClusterConfigError(f"{PREFIX}{name}: {item!r} is not an IP or CIDR") from exc
    return result
