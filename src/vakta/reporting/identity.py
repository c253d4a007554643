"""The agent's identity: which console it reports to, its id and secret, kept readable by its own user only."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

#: Under the Vakta home: the identity, the alert queue.
AGENT_FOLDER = "agent"
IDENTITY_FILE = "identity.json"
QUEUE_FILE = "queue.sqlite"


@dataclass(frozen=True)
class Identity:
    server: str
    agent_id: str
    secret: str
    hostname: str
    #: The console's bundle signing key (``vakta server key show``), pinned at enrolment; "" if none.
    bundle_key: str = ""


def agent_folder(home: Path) -> Path:
    """``<home>/agent``, created mode 0700 (the secret and the queue of alerts live there)."""
    folder = home / AGENT_FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Write a file mode 0600 atomically: never readable by others, never half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save(home: Path, identity: Identity) -> Path:
    path = agent_folder(home) / IDENTITY_FILE
    write_private(path, json.dumps(asdict(identity), indent=2).encode())
    return path


def load(home: Path) -> Identity:
    """The stored identity; ValueError naming what to do when the agent is not enrolled."""
    path = home / AGENT_FOLDER / IDENTITY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = str(data.get("bundle_key", ""))
        return Identity(data["server"], data["agent_id"], data["secret"], data["hostname"], key)
    except FileNotFoundError:
        raise ValueError(f"not enrolled ({path} is missing): run `vakta agent enroll` first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read the agent identity: {exc}") from None
