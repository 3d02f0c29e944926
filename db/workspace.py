"""Where the workspace is: --workspace, then $SAGE_WORKSPACE, then the config file,
then ~/sage-workspace. Shared by the dashboard and the engine."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

ENV_VAR = "SAGE_WORKSPACE"
DEFAULT_WORKSPACE = Path("~/sage-workspace")


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sage-tui" / "config.toml"


def resolve_workspace(cli_value: str | os.PathLike | None = None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser().resolve()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().resolve()
    path = config_file()
    if path.exists():
        try:
            configured = tomllib.loads(path.read_text()).get("workspace")
        except (tomllib.TOMLDecodeError, OSError):
            configured = None  # a broken config file must not stop the app; the default applies
        if configured:
            return Path(configured).expanduser().resolve()
    return DEFAULT_WORKSPACE.expanduser().resolve()
