"""The keyring file on disk: read it, replace it atomically, lock it.

Writes replace the whole file: a temp file in the same directory (mode 0600),
fsync, rename over the old file, fsync the directory. A reader therefore sees
the old file or the new one, never a mix. Processes sharing the file
serialise mutations on ``flock`` of ``<file>.lock`` (the keyring itself is
replaced by rename, so it cannot carry the lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from keys.keyring import codec
from keys.keyring.state import KeyringState
from keys.provider import KeyringCorrupt, KeyringError

Signature = tuple[int, int, int, int]


class FileLock:
    """flock on ``<keyring>.lock``: serialises writers across processes."""

    def __init__(self, keyring: Path) -> None:
        self._path = keyring.with_name(keyring.name + ".lock")

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def signature(path: Path) -> Signature:
    """Changes on every write (a rename always brings a new inode); raises OSError."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def read(path: Path) -> KeyringState:
    """The state in ``path``. Refuses a file group or others can access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyringError(f"keyring {path} does not exist") from None
    except OSError as exc:
        raise KeyringError(f"cannot read keyring {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & 0o077:
            raise KeyringError(f"keyring {path} is open to group or others (mode {mode & 0o777:o}); chmod 600 it")
        raw = f.read()
    try:
        return codec.decode(raw)
    except ValueError:
        raise KeyringCorrupt(f"keyring {path} is not a {codec.FORMAT} file") from None


def write(path: Path, state: KeyringState) -> None:
    """Replace ``path`` with ``state``: temp file (0600), fsync, rename, fsync the directory."""
    data = codec.encode(state)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
