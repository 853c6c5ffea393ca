"""Crash-safe file writes for masks, reports and exported models."""

import os
import tempfile


def atomic_write(path, data):
    """Writes bytes to `path` through a temporary file and a rename.

    A crash mid-write leaves the previous file intact, never a half-written one.

    Example:

    >>> atomic_write("/tmp/example.bin", b"hello")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
