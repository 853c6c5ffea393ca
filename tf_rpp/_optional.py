"""Optional dependencies: imported on first use, with the extra that installs them named on failure."""

import importlib


def require(module, extra):
    """Imports `module`, or raises an ImportError that names `pip install "tf_rpp[extra]"`.

    Example:

    >>> require("json", "none").dumps([1])
    '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module.split('.')[0]} is not installed; it comes with tf_rpp's `{extra}` extra: "
            f'pip install "tf_rpp[{extra}]"') from e
