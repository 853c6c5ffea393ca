"""Crash-safe file writes for masks, reports and exported models."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    For writers that take a path (Keras's exporters): a crash or an error
    mid-write leaves the previous file intact and no temporary file behind.

    Example:

    >>> with atomic_path("/tmp/example.txt") as tmp:
    ...     _ = open(tmp, "w").write("hello")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        if os.path.exists(tmp):
            os.chmod(tmp, _normal_mode())  # mkstemp makes 0600; a written file gets the user's usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _normal_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, data):
    """Writes bytes to `path` through a temporary file and a rename.

    A crash mid-write leaves the previous file intact, never a half-written one.

    Example:

    >>> atomic_write("/tmp/example.bin", b"hello")
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
