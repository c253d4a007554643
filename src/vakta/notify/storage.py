"""Where a matched file lives: its storage kind and owner, as alerts and the console group them.

Kinds: internal disk, removable media, network share, cloud-sync folder,
remote storage (an object-store URL), or unknown.  On Linux the mount table
(``/proc/self/mountinfo``) gives each path's filesystem type and device, and
sysfs says whether that device is removable or on USB; cloud-sync folders are
known by their names (Dropbox, OneDrive, Google Drive, iCloud...).  Elsewhere
only remote storage and cloud-sync folders are told apart.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INTERNAL = "internal disk"
REMOVABLE = "removable media"
NETWORK = "network share"
CLOUD_SYNC = "cloud-sync folder"
REMOTE = "remote storage"
UNKNOWN = "unknown"

NETWORK_FS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre", "gpfs",
        "beegfs", "9p", "davfs", "fuse.sshfs", "sshfs", "fuse.glusterfs", "fuse.davfs2", "fuse.rclone",
        "fuse.s3fs", "fuse.cephfs", "fuse.gcsfuse", "fuse.smbnetfs",
    }
)  # fmt: skip
#: Optical discs are removable whatever their drive says.
REMOVABLE_FS = frozenset({"iso9660", "udf"})
#: Folder names the sync clients create (a suffix such as " - Company" or " (Personal)" is allowed).
CLOUD_SYNC_NAMES = (
    "dropbox", "onedrive", "google drive", "googledrive", "icloud drive", "iclouddrive",
    "mobile documents", "cloudstorage", "nextcloud", "owncloud", "box sync", "box drive",
    "pcloud drive", "megasync", "mega", "tresorit", "seafile", "sync.com",
)  # fmt: skip
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    point: str
    device: str  # major:minor
    fstype: str
    source: str


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of ``/proc/self/mountinfo`` (proc(5)), longest mount point first."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        tail = fields.index("-", 6)
        if len(fields) < tail + 3:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.append(Mount(point, fields[2], fields[tail + 1], fields[tail + 2]))
    return sorted(mounts, key=lambda m: len(m.point), reverse=True)


def _in_cloud_sync_folder(path: str) -> bool:
    for part in Path(path).parts[:-1]:
        name = part.lower()
        for known in CLOUD_SYNC_NAMES:
            if name == known or name.startswith((known + " - ", known + " (", known + "-")):
                return True
    return False


class StorageProbe:
    """Classifies paths by where they are stored; the mount table is read once, devices cached."""

    def __init__(self, mountinfo: str | None = None, sys_root: Path = Path("/sys")) -> None:
        if mountinfo is None:
            try:
                mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
            except OSError:
                mountinfo = ""
        self.mounts = parse_mountinfo(mountinfo)
        self.sys_root = sys_root
        self._devices: dict[str, bool] = {}

    def kind(self, path: str) -> str:
        if _URL.match(path):
            return REMOTE
        if _in_cloud_sync_folder(path):
            return CLOUD_SYNC
        mount = self._mount_of(path)
        if mount is None:
            return UNKNOWN
        if mount.fstype in NETWORK_FS or mount.fstype.startswith(("nfs", "cifs", "smb")):
            return NETWORK
        if mount.fstype in REMOVABLE_FS or self._removable(mount.device):
            return REMOVABLE
        return INTERNAL

    def _mount_of(self, path: str) -> Mount | None:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return None
        for mount in self.mounts:
            point = mount.point.rstrip("/")
            if real == mount.point or real.startswith(point + "/"):
                return mount
        return None

    def _removable(self, device: str) -> bool:
        """Whether the block device (or the disk a partition is on) is removable or attached by USB."""
        if device not in self._devices:
            self._devices[device] = self._read_removable(device)
        return self._devices[device]

    def _read_removable(self, device: str) -> bool:
        try:
            node = (self.sys_root / "dev" / "block" / device).resolve(strict=True)
        except OSError:
            return False  # not a block device (tmpfs, overlay...): not removable media
        if "/usb" in node.as_posix():
            return True
        for folder in (node, node.parent):
            try:
                if (folder / "removable").read_text().strip() == "1":
                    return True
            except OSError:
                continue
        return False


def owner(path: str) -> str | None:
    """The account a local file belongs to (its uid where the system has no name); None if unknown."""
    if _URL.match(path):
        return None
    try:
        uid = os.stat(path, follow_symlinks=False).st_uid
    except (OSError, ValueError):
        return None
    try:
        import pwd
    except ImportError:  # Windows: no uid owners
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
