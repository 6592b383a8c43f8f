"""Where the project's Pulumi toolchain lives and which versions it must have.

Pure: paths and version pins only, no I/O beyond reading the environment. ``PROJECT_ROOT``
is ``project``'s, re-exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from project import PROJECT_ROOT

# The CLI is built from the `github.com/pulumi/pulumi/pkg/v3` Go module. The module proxy
# reachable here serves v3.274.1 but refuses v3.272.0 (HTTP 403), so the CLI is one minor
# release ahead of the Python SDK; the engine accepts any SDK older than itself.
PULUMI_CLI_VERSION = "3.274.1"
# The Python SDK pin in requirements.txt; the CLI must be at least this new.
PULUMI_SDK_VERSION = "3.272.0"
COMMAND_PROVIDER_VERSION = "1.2.1"


@dataclass(frozen=True)
class ToolPaths:
    """Locations of the toolchain cache (outside the repo) and of the project-owned state."""

    cache_dir: Path
    state_dir: Path

    @property
    def cli_dir(self) -> Path:
        return self.cache_dir / f"pulumi-cli-v{PULUMI_CLI_VERSION}"

    @property
    def cli(self) -> Path:
        # PulumiCommand(root=...) looks for <root>/bin/pulumi.
        return self.cli_dir / "bin" / "pulumi"

    @property
    def pulumi_home(self) -> Path:
        return self.state_dir / "pulumi-home"

    @property
    def backend_dir(self) -> Path:
        return self.state_dir / "backend"

    @property
    def backend_url(self) -> str:
        return f"file://{self.backend_dir}"


def tool_paths() -> ToolPaths:
    """Paths from the environment, with defaults: cache in ~/.cache, state in the repo's .state."""
    cache = os.environ.get("GEMNAR_TOOLS_CACHE") or str(Path.home() / ".cache" / "gemnar" / "tools")
    state = os.environ.get("GEMNAR_STATE_DIR") or str(PROJECT_ROOT / ".state")
    return ToolPaths(cache_dir=Path(cache), state_dir=Path(state))
