"""Files written whole or not at all: what a reader (another process, a crashed run's
successor, TF Serving polling its config) finds under a name is always complete.

Every file the project writes for someone else to read goes through here: a temporary file
beside the target (hidden, named for this process and a random token, so two writers of the
same target never share one), renamed over the target once complete (``os.replace``, atomic
on POSIX within a directory), and removed when writing fails, so no ``.tmp`` is left behind.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

__all__ = ["replacing", "write_file"]


@contextlib.contextmanager
def replacing(path: str, durable: bool = False) -> Iterator[str]:
    """A temporary path beside ``path`` for the block to create (a file, a symlink); renamed
    over ``path`` when the block ends without error, removed when it raises. ``durable``
    also flushes the file to disk before the rename (for a file read after a power loss)."""
    path = os.path.abspath(path)
    d, name = os.path.split(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if durable and os.path.isfile(tmp) and not os.path.islink(tmp):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_file(path: str, data: str | bytes, durable: bool = False) -> str:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` whole; the absolute path."""
    with replacing(path, durable=durable) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return os.path.abspath(path)
