"""Output files that appear whole or not at all, even if the process is killed.

On Linux the content is written to an unnamed file (``O_TMPFILE``) in the
target directory and given its name only when complete (``linkat``), so a
``SIGKILL`` midway leaves nothing behind, not even a temp file. Elsewhere
(or on a filesystem without ``O_TMPFILE``) a hidden ``.chunkfiles-*.part``
file is renamed into place instead; only a kill can leave that one behind.

Everything is relative to a directory descriptor, so a caller that opened
the directory without following symlinks never writes anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os

_TMPFILE = getattr(os, "O_TMPFILE", 0)
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT}
#: Prefix of named temp files (when ``O_TMPFILE`` cannot be used).
TEMP_PREFIX = ".chunkfiles-"


class AtomicFile:
    """A file being written in directory ``dir_fd``; ``publish`` names it, ``discard`` drops it."""

    __slots__ = ("dir_fd", "fd", "temp")

    def __init__(self, dir_fd: int) -> None:
        self.dir_fd = dir_fd
        self.temp: str | None = None
        flags = os.O_RDWR | os.O_CLOEXEC
        if _TMPFILE and os.path.isdir("/proc/self/fd"):
            try:
                self.fd = os.open(".", flags | _TMPFILE, 0o666, dir_fd=dir_fd)
                return
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
        self.temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}.part"
        self.fd = os.open(self.temp, flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd)

    def publish(self, name: str, *, overwrite: bool) -> None:
        """Give the complete file ``name``; ``FileExistsError`` if taken and not ``overwrite``.

        Closes the file. Without ``overwrite`` an existing file is never
        replaced, even one created a moment ago by someone else.
        """
        try:
            if self.temp is None:
                source = f"/proc/self/fd/{self.fd}"
                if not overwrite:
                    os.link(source, name, dst_dir_fd=self.dir_fd)
                    return
                self.temp = f"{TEMP_PREFIX}{os.urandom(6).hex()}.part"
                os.link(source, self.temp, dst_dir_fd=self.dir_fd)
            if overwrite:
                os.replace(self.temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                os.link(self.temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                os.unlink(self.temp, dir_fd=self.dir_fd)
            self.temp = None
        finally:
            self.discard()

    def discard(self) -> None:
        """Close the file and remove any temp name (the content is dropped)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp, dir_fd=self.dir_fd)
            self.temp = None
