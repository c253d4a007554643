"""RAR archives (RAR 1.5 to 4 and RAR 5), read with libarchive as 7z archives are.

libarchive (see :mod:`vakta.containers.sevenzip`) decodes both RAR formats in
the process and as a stream, where the ``rarfile`` package would run an
external ``unrar`` or ``bsdtar`` program per member.  rarfile is used only to
read the headers of a RAR 5 archive for encrypted members: libarchive 3.6 does
not flag them and would hand out their ciphertext as if it were the file.

Encrypted members are members with an error; an archive with encrypted names
(``rar -hp``) cannot be listed, which is an error on it.  libarchive cannot
decode the members of a RAR 4 *solid* archive after the first, nor a member
that goes on in another volume of a multi-volume set: both end as errors.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

import rarfile

from vakta.containers.sevenzip import LibarchiveReader

log = logging.getLogger(__name__)


def encrypted_names(stream: BinaryIO) -> frozenset[str]:
    """Names of the encrypted members, from the headers; none when rarfile cannot list them.

    libarchive flags RAR 4 encryption itself and refuses archives with
    encrypted names, so a listing that fails here loses nothing it would find.
    """
    try:
        infos = rarfile.RarFile(stream).infolist()
    except (rarfile.Error, OSError, ValueError, EOFError) as exc:
        log.debug("rarfile cannot list the archive (%s); libarchive's own flags apply", exc)
        return frozenset()
    return frozenset(info.filename for info in infos if info.filename and info.needs_password())


READER = LibarchiveReader(
    "rar",
    frozenset({"application/x-rar-compressed", "application/vnd.rar"}),
    ("rar", "rar5"),
    seek=False,
    locked=encrypted_names,
)
