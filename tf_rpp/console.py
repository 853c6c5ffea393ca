"""A quiet console for tf_rpp's commands: our progress and results, not TensorFlow's start-up noise.

TensorFlow prints C++ log lines while it loads (CUDA probing on machines
without a GPU, oneDNN and CPU-instruction notices, `cuInit` errors) that users
read as faults. Some of them (`Could not find cuda drivers`) are written by
absl before TensorFlow's own log level applies, so `TF_CPP_MIN_LOG_LEVEL`
alone cannot stop them. The `tf-rpp` command and the scripts in `recipes/` and
`bench/` therefore load TensorFlow once with the native stderr muted and the
log level at 3; a library import (`import tf_rpp` in your code) changes
nothing. `--tf-logs` (or `TF_CPP_MIN_LOG_LEVEL=0`) brings them back.

Example:

>>> import os
>>> quiet_tensorflow(environ={})
{'TF_CPP_MIN_LOG_LEVEL': '3'}
"""

import os
import sys

import contextlib

COMMANDS = ("tf-rpp",)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_FOLDERS = tuple(os.path.join(_ROOT, name) for name in ("recipes", "bench"))


def wants_tf_logs():
    """`--tf-logs` on the command line, or `TF_CPP_MIN_LOG_LEVEL` set by the user."""
    return "--tf-logs" in sys.argv or "TF_CPP_MIN_LOG_LEVEL" in os.environ


def quiet_tensorflow(environ=None):
    """Sets `TF_CPP_MIN_LOG_LEVEL=3` unless already set; returns `environ`."""
    environ = os.environ if environ is None else environ
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return environ


@contextlib.contextmanager
def native_stderr_muted():
    """Sends file descriptor 2 (what C++ code writes to) to /dev/null inside the block.

    Python exceptions raised inside still reach the user: they are printed
    after the block, when stderr is back.

    Example:

    ```python
    with native_stderr_muted():
        import tensorflow  # noqa: F401  (its start-up lines are dropped)
    ```
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def load_tensorflow_quietly():
    """Imports TensorFlow with its start-up logs off (for commands; see the module docstring)."""
    if wants_tf_logs():
        return
    quiet_tensorflow()
    with native_stderr_muted():
        import tensorflow  # noqa: F401


def quiet_python_logging():
    """Our commands' Python-side quiet: absl and TensorFlow loggers at ERROR (`tf-rpp` skips it with `--tf-logs`).

    Example:

    ```python
    quiet_python_logging()   # after TensorFlow is imported
    ```
    """
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")


def running_as_command(argv=None):
    """True when this process is the installed `tf-rpp` command or a script of `recipes/` or `bench/`.

    Example:

    >>> running_as_command(["/usr/bin/tf-rpp", "prune"])
    True
    >>> running_as_command(["python", "-c"])
    False
    """
    argv = sys.argv if argv is None else argv
    if not argv or not argv[0]:
        return False
    script = os.path.abspath(argv[0])
    return os.path.basename(argv[0]) in COMMANDS or os.path.dirname(script) in SCRIPT_FOLDERS
