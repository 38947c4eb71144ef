"""Replace a file atomically and never through a symbolic link: the one writer for files in a bundle.

The new content goes to a private temporary file in the same folder (an unpredictable name, created with
``O_CREAT | O_EXCL | O_NOFOLLOW``), is flushed to disk, then renamed over the destination. A destination
or a folder that is a symbolic link is refused, so a bundle that ships ``manifest.json.tmp`` or
``parity.json`` as a link to a file elsewhere cannot make the kit write that file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from convert.errors import DeployKitError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def replace_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text is UTF-8) to ``path``: all of it or, on any failure, nothing.

    Raises:
        DeployKitError: the destination or its folder is a symbolic link, the destination is not a regular
        file, or the folder cannot be written.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path.parent):
            raise DeployKitError(f"{str(path.parent)!r} is a symbolic link; deploykit does not write through links: "
                                 "replace it with a real folder") from None
        raise DeployKitError(f"cannot write {str(path)!r} ({exc.strerror}); check the folder") from None
    try:
        try:
            info = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise DeployKitError(f"{str(path)!r} is a symbolic link; deploykit does not write through links: "
                                 "remove it and run again")
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise DeployKitError(f"{str(path)!r} is not a regular file; remove it and run again")
        for _ in range(16):
            temporary = f".{path.name}.{secrets.token_hex(8)}.tmp"
            try:
                handle = os.open(temporary, _CREATE, 0o666, dir_fd=folder)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 16 collisions of 64 random bits
            raise DeployKitError(f"cannot create a temporary file beside {str(path)!r}; run again")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            if isinstance(exc, OSError):
                raise DeployKitError(f"cannot write {str(path)!r} ({exc.strerror or exc}); check the folder") from None
            raise
    finally:
        os.close(folder)
