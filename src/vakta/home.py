"""Where Vakta keeps its state: ``--home``, else ``$VAKTA_HOME``, else the per-user data folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def resolve_home(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get("VAKTA_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("vakta", appauthor=False))
