"""Sparsity masks and counting zeros: the product of pruning, carried from pre-training to fine-tuning.

A `SparsityMask` maps weight keys (paths relative to the backbone, see
`tf_rpp.selection`) to boolean arrays, True where the weight is kept. It is
extracted from a pruned model, computed from magnitudes (the hardening step),
saved as `.npz` without pickle, loaded with checks, and applied to any model
with the same weights. During training `MaskedOptimizer` enforces it.

`total_zeros`, `zero_count`, `total_sparsity` and `layer_sparsity` are the one
place tf_rpp measures sparsity: exact zeros, counted where the tensor lives.

Example:

>>> import numpy as np
>>> mask = SparsityMask({"w": np.array([True, False, False, True])})
>>> mask.sparsity
0.5
>>> total_sparsity({"a": zero_count(np.array([0.0, 1.0])), "b": zero_count(np.zeros(2))})
0.75
"""

import datetime
import hashlib
import io
import json
import os
import zipfile

import keras
import numpy as np

from tf_rpp import selection
from tf_rpp._files import atomic_write

_FORMAT = "tf_rpp.SparsityMask/1"
_METADATA_KEY = "__metadata__"


class SparsityMask:
    """A boolean keep-mask per pruned weight, keyed by weight path.

    Args:
        masks: a dict from weight key to a boolean array (True = kept).
        metadata: optional JSON-serializable dict (how the mask was made).

    Example:

    >>> import numpy as np
    >>> mask = SparsityMask({"dense/kernel": np.array([[True, False]])})
    >>> mask.sparsity
    0.5
    >>> mask.save("/tmp/mask.npz")
    >>> SparsityMask.load("/tmp/mask.npz") == mask
    True
    """

    def __init__(self, masks, metadata=None):
        if not masks:
            raise ValueError("A SparsityMask needs at least one weight; received none.")
        self._masks = {}
        for key, value in masks.items():
            array = np.asarray(value)
            if array.dtype != np.bool_:
                raise ValueError(
                    f"Mask of {key!r} has dtype {array.dtype}; masks are boolean "
                    "(True = kept). Pass `array != 0` to convert."
                )
            self._masks[str(key)] = array
        self.metadata = dict(metadata or {})

    # Construction ---------------------------------------------------------

    @classmethod
    def from_model(cls, model, prune=None, include_embeddings=False, **metadata):
        """The exact zeros of the selected weights of `model`.

        Args:
            model: a Keras model; for a keras-hub task, its backbone's weights
                are found under the same keys.
            prune, include_embeddings: the selection, as in `select_weights`.
            **metadata: extra metadata to store.

        Example:

        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="m")
        >>> SparsityMask.from_model(model, prune="d/kernel").keys
        ['m/d/kernel']
        """
        variables = selection.select_weights(model, prune, include_embeddings)
        masks = {selection.weight_key(v): np.asarray(v.numpy()) != 0 for v in variables}
        return cls(masks, _creation_metadata("exact zeros", model, metadata))

    @classmethod
    def from_magnitudes(cls, weights, sparsity, scope="global", **metadata):
        """Keeps the largest-magnitude weights, pruning exactly `sparsity` of them.

        This is the hardening step at a schedule's end and the NIP baseline's
        update. Ties (most often many exact zeros) are broken by position, so the
        count is exact and the result deterministic.

        Args:
            weights: a dict from key to array.
            sparsity: the fraction to prune, in [0, 1).
            scope: `"global"` ranks all weights together; `"per_layer"` prunes
                `sparsity` of each weight (tfmot's behaviour).
            **metadata: extra metadata to store.

        Example:

        >>> import numpy as np
        >>> m = SparsityMask.from_magnitudes({"w": np.array([[0.1, -3.0, 0.2, 4.0]])}, 0.5)
        >>> m["w"]
        array([[False,  True, False,  True]])
        """
        _check_fraction(sparsity, "sparsity")
        if scope not in ("global", "per_layer"):
            raise ValueError(f"`scope` must be 'global' or 'per_layer'; received {scope!r}.")
        arrays = {k: np.abs(np.asarray(v, dtype=np.float32)) for k, v in weights.items()}
        broken = [k for k, a in arrays.items() if not np.all(np.isfinite(a))]
        if broken:
            # A mask ranked on NaN/Inf weights would be garbage that looks fine.
            raise FloatingPointError(
                f"Cannot rank magnitudes: {len(broken)} weight(s) hold NaN or Inf, first {broken[0]!r}. "
                "Training diverged; restore the last good checkpoint and lower the learning rate.")
        if scope == "per_layer":
            masks = {k: _keep_largest(a.ravel(), sparsity).reshape(a.shape) for k, a in arrays.items()}
        else:
            flat = np.concatenate([a.ravel() for a in arrays.values()])
            keep = _keep_largest(flat, sparsity)
            masks, start = {}, 0
            for k, a in arrays.items():
                masks[k] = keep[start : start + a.size].reshape(a.shape)
                start += a.size
        info = {"method": "magnitude", "target_sparsity": float(sparsity), "scope": scope}
        return cls(masks, _creation_metadata(info, None, metadata))

    # Views ----------------------------------------------------------------

    @property
    def keys(self):
        """The weight keys, in order."""
        return list(self._masks)

    def __getitem__(self, key):
        return self._masks[key]

    def __contains__(self, key):
        return key in self._masks

    def __len__(self):
        return len(self._masks)

    def items(self):
        """(key, boolean array) pairs."""
        return self._masks.items()

    def __eq__(self, other):
        if not isinstance(other, SparsityMask) or self.keys != other.keys:
            return False
        return all(np.array_equal(self[k], other[k]) for k in self.keys)

    def __repr__(self):
        return f"<SparsityMask: {len(self)} weights, {self.num_weights} entries, sparsity {self.sparsity:.4f}>"

    @property
    def num_weights(self):
        """Total number of masked entries."""
        return int(sum(m.size for m in self._masks.values()))

    @property
    def num_pruned(self):
        """Number of entries the mask prunes (False)."""
        return int(sum(m.size - np.count_nonzero(m) for m in self._masks.values()))

    @property
    def sparsity(self):
        """Fraction of masked entries that are pruned."""
        return self.num_pruned / max(self.num_weights, 1)

    def overlap(self, other):
        """The fraction of this mask's kept entries that `other` keeps too.

        Two masks of the same sparsity `s` chosen independently at random share
        about `1 - s` of their kept entries; 1.0 means the same mask.

        Raises:
            ValueError: if the masks cover different weights or shapes.

        Example:

        >>> import numpy as np
        >>> a = SparsityMask({"w": np.array([True, True, False, False])})
        >>> a.overlap(SparsityMask({"w": np.array([True, False, True, False])}))
        0.5
        """
        if self.keys != other.keys or any(self[k].shape != other[k].shape for k in self.keys):
            raise ValueError("overlap() needs two masks of the same weights and shapes; "
                             f"received {self!r} and {other!r}.")
        kept = sum(np.count_nonzero(m) for _, m in self.items())
        shared = sum(np.count_nonzero(m & other[k]) for k, m in self.items())
        return float(shared / max(kept, 1))

    def layer_sparsity(self):
        """A dict from key to that weight's pruned fraction.

        Example:

        >>> import numpy as np
        >>> SparsityMask({"a": np.array([[True, False]])}).layer_sparsity()
        {'a': 0.5}
        """
        return {k: float(1.0 - np.count_nonzero(m) / max(m.size, 1)) for k, m in self._masks.items()}

    def summary(self, print_fn=None):
        """Prints (or returns, with `print_fn=False`) a per-weight sparsity table.

        Example:

        >>> import numpy as np
        >>> print(SparsityMask({"a": np.array([[True, False]])}).summary(print_fn=False))
        weight  shape   kept  pruned  sparsity
        a       (1, 2)     1       1    50.00%
        total              1       1    50.00%
        """
        rows = [("weight", "shape", "kept", "pruned", "sparsity")]
        for key, m in self._masks.items():
            kept = int(np.count_nonzero(m))
            rows.append((key, str(m.shape), str(kept), str(m.size - kept), f"{100 * (1 - kept / max(m.size, 1)):.2f}%"))
        total_kept = self.num_weights - self.num_pruned
        rows.append(("total", "", str(total_kept), str(self.num_pruned), f"{100 * self.sparsity:.2f}%"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = []
        for r in rows:
            left = "  ".join(r[i].ljust(widths[i]) for i in range(2))
            right = "  ".join(r[i].rjust(widths[i]) for i in range(2, 5))
            lines.append(f"{left}  {right}".rstrip())
        text = "\n".join(lines)
        if print_fn is False:
            return text
        (print_fn or print)(text)

    # Applying -------------------------------------------------------------

    def check_compatible(self, model):
        """Returns `{key: variable}` for `model`, or raises naming the first misfit.

        Raises:
            ValueError: a key matches no weight (or several), or a shape differs.

        Example:

        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")])
        >>> list(SparsityMask({"d/kernel": np.ones((2, 1), bool)}).check_compatible(model))
        ['d/kernel']
        """
        matched = selection.match_keys(self.keys, model)
        for key, variable in matched.items():
            if tuple(variable.shape) != tuple(self[key].shape):
                raise ValueError(
                    f"Mask of weight {key!r} has shape {tuple(self[key].shape)} but the "
                    f"model's weight has shape {tuple(variable.shape)}. This mask was "
                    "learned on a model of another size."
                )
        return matched

    def apply(self, model):
        """Sets the pruned entries of `model`'s weights to exactly 0.0.

        To keep them at zero while training, compile with
        `MaskedOptimizer(inner, mask)`.

        Example:

        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")])
        >>> SparsityMask({"d/kernel": np.array([[True], [False]])}).apply(model)
        >>> float(model.layers[0].kernel.numpy()[1, 0])
        0.0
        """
        for key, variable in self.check_compatible(model).items():
            variable.assign(np.where(self[key], variable.numpy(), 0).astype(variable.dtype))

    # Files ----------------------------------------------------------------

    def save(self, path):
        """Writes the mask to `path` (`.npz`, compressed), atomically.

        The file holds one boolean array per weight and a JSON metadata entry
        with shapes, sparsity, a SHA-256 of the masks and how they were made.
        """
        metadata = dict(self.metadata)
        metadata.update(
            format=_FORMAT,
            keys=self.keys,
            shapes={k: list(m.shape) for k, m in self.items()},
            sparsity=self.sparsity,
            sha256=self._digest(),
        )
        arrays = {f"m{i}": m for i, m in enumerate(self._masks.values())}
        arrays[_METADATA_KEY] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write(path, buffer.getvalue())

    @classmethod
    def load(cls, path):
        """Reads a mask written by `save`, checking it is whole and untampered.

        Raises:
            ValueError: the file is not a tf_rpp mask, is truncated, or its
                contents do not match its recorded shapes and checksum.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No mask file at {path!r}.")
        try:
            with np.load(path, allow_pickle=False) as data:
                files = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise ValueError(
                f"{path!r} is not a readable tf_rpp mask (.npz): {e}. The file is "
                "truncated or corrupt; re-create it with SparsityMask.save."
            ) from None
        if _METADATA_KEY not in files:
            raise ValueError(f"{path!r} is an .npz file but not a tf_rpp mask (it has no metadata).")
        try:
            metadata = json.loads(files.pop(_METADATA_KEY).tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"The metadata of mask {path!r} is corrupt: {e}.") from None
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{path!r} has format {metadata.get('format')!r}; expected {_FORMAT!r}.")
        keys = metadata["keys"]
        if len(keys) != len(files):
            raise ValueError(f"Mask {path!r} lists {len(keys)} weights but holds {len(files)} arrays.")
        masks = {}
        for i, key in enumerate(keys):
            array = files[f"m{i}"]
            if array.dtype != np.bool_ or list(array.shape) != metadata["shapes"][key]:
                raise ValueError(
                    f"Mask {path!r}: the array of {key!r} is {array.dtype}{list(array.shape)}, "
                    f"but the file records bool{metadata['shapes'][key]}. The file was altered."
                )
            masks[key] = array
        mask = cls(masks, {k: v for k, v in metadata.items() if k not in ("keys", "shapes", "format")})
        if mask._digest() != metadata.get("sha256"):
            raise ValueError(
                f"Mask {path!r} fails its SHA-256 check: its contents were altered after "
                "it was saved. Do not use it; re-create it."
            )
        return mask

    def _digest(self):
        digest = hashlib.sha256()
        for key, m in self.items():
            digest.update(key.encode())
            digest.update(str(m.shape).encode())
            digest.update(np.packbits(m).tobytes())
        return digest.hexdigest()


def _keep_largest(flat_abs, sparsity):
    num_pruned = int(round(sparsity * flat_abs.size))
    keep = np.ones(flat_abs.size, dtype=bool)
    if num_pruned == 0:
        return keep
    # Linear time (np.partition), ties at the cut broken by position: a
    # near-identical input (another device count, a resumed run) gives a
    # near-identical mask, where argpartition could reshuffle every tie.
    cut = np.partition(flat_abs, num_pruned - 1)[num_pruned - 1]
    below = flat_abs < cut
    keep[below] = False
    ties = np.flatnonzero(flat_abs == cut)[: num_pruned - int(np.count_nonzero(below))]
    keep[ties] = False
    return keep


def _check_fraction(value, name):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); received {value}. Use e.g. 0.8 for 80%.")


def _creation_metadata(method, model, extra):
    info = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    info.update(method if isinstance(method, dict) else {"method": method})
    if model is not None:
        info["model"] = model.name
    info.update(extra)
    return info


# Counting zeros ---------------------------------------------------------------


def total_zeros(tensor):
    """Number of entries of `tensor` equal to 0.0, as a Python int.

    Counted where the tensor lives (one pass, no host copy of the weight).

    Example:

    >>> import numpy as np
    >>> total_zeros(np.array([0.0, 1.0, 0.0]))
    2
    """
    values = keras.ops.convert_to_tensor(tensor)  # any backend's tensor or variable, or an array
    return int(keras.ops.size(values)) - int(keras.ops.count_nonzero(values))


def zero_count(tensor):
    """`(zeros, size)` of a tensor.

    Example:

    >>> import numpy as np
    >>> zero_count(np.array([[0.0, 3.0], [0.0, 0.0]]))
    (3, 4)
    """
    return total_zeros(tensor), int(np.prod(np.shape(tensor)))


def total_sparsity(zero_counts):
    """Fraction of zeros over all weights of a dict of `(zeros, size)` (0.0 when empty).

    Example:

    >>> total_sparsity({"a": (1, 4), "b": (3, 4)})
    0.5
    """
    zeros = sum(z for z, _ in zero_counts.values())
    return zeros / max(sum(n for _, n in zero_counts.values()), 1)


def layer_sparsity(zero_counts):
    """Fraction of zeros of each weight of a dict of `(zeros, size)`.

    Example:

    >>> layer_sparsity({"a": (1, 4), "b": (0, 0)})
    {'a': 0.25, 'b': 0.0}
    """
    return {key: zeros / max(size, 1) for key, (zeros, size) in zero_counts.items()}
