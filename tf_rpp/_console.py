"""A quiet console for tf_rpp's commands: our progress and results, not TensorFlow's start-up noise.

TensorFlow prints C++ log lines while it loads (CUDA probing on machines
without a GPU, oneDNN and CPU-instruction notices, `cuInit` errors) that users
read as faults. Some of them (`Could not find cuda drivers`) are written by
absl before TensorFlow's own log level applies, so `TF_CPP_MIN_LOG_LEVEL`
alone cannot stop them. The `tf-rpp` command, and any script run with
`TF_RPP_QUIET=1` in its environment, therefore load TensorFlow once with the
native stderr muted and the log level at 3; a plain library import (`import
tf_rpp` in your code) changes nothing. `--tf-logs` (or `TF_CPP_MIN_LOG_LEVEL=0`)
brings them back.

Example:

>>> import os
>>> quiet_tensorflow(environ={})
{'TF_CPP_MIN_LOG_LEVEL': '3'}
"""

import os
import sys

import contextlib

COMMANDS = ("tf-rpp",)
QUIET_VARIABLE = "TF_RPP_QUIET"
BACKENDS = ("tensorflow", "jax", "torch")


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


def backend_in(argv):
    """The NAME of `--backend NAME` (or `--backend=NAME`) in a command line, or None.

    Example:

    >>> backend_in(["tf-rpp", "compress", "--backend", "jax", "--out", "runs/jax"])
    'jax'
    >>> backend_in(["tf-rpp", "--backend=torch", "prune"])
    'torch'
    >>> backend_in(["tf-rpp", "prune"]) is None
    True
    """
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


def select_backend(argv=None, environ=None):
    """Sets `KERAS_BACKEND` from the command line's `--backend`, for commands, before Keras is imported.

    Keras reads `KERAS_BACKEND` once, when it is first imported, so `tf-rpp
    --backend jax` must set it before `tf_rpp` imports Keras. An unknown name
    is left for the command's own parser to refuse.

    Example:

    >>> select_backend(["tf-rpp", "compress", "--backend", "jax"], environ={})
    {'KERAS_BACKEND': 'jax'}
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    name = backend_in(argv[1:])
    if name in BACKENDS:
        environ["KERAS_BACKEND"] = name
    return environ


def running_as_command(argv=None, environ=None):
    """True when this process is the installed `tf-rpp` command, or has `TF_RPP_QUIET=1` set.

    Example:

    >>> running_as_command(["/usr/bin/tf-rpp", "prune"], environ={})
    True
    >>> running_as_command(["python", "-c"], environ={})
    False
    >>> running_as_command(["python", "recipes/main.py"], environ={"TF_RPP_QUIET": "1"})
    True
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if environ.get(QUIET_VARIABLE, "") not in ("", "0"):
        return True
    return bool(argv and argv[0]) and os.path.basename(argv[0]) in COMMANDS
