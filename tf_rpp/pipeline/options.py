"""Config dataclasses as command-line options: one source for defaults and help.

Every field of a pipeline config is declared with `option(default, help)`;
`add_arguments` turns the fields into `argparse` flags (`text_columns` ->
`--text-columns`), and `config_from_arguments` builds the config back, so the
Python API and `tf-rpp` can never disagree on a default.

Example:

>>> import argparse, dataclasses
>>> @dataclasses.dataclass
... class Config:
...     steps: int = option(300, "training steps")
...     save_model: bool = option(True, "write model.keras")
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser, Config)
>>> config_from_arguments(Config, parser.parse_args(["--steps", "5", "--no-save-model"]))
Config(steps=5, save_model=False)
"""

import dataclasses
import json
import os
import typing


def option(default, help, type=None, choices=None, flag=None, nargs=None):  # noqa: A002
    """A config field with its command-line help (`type` when the default is None).

    Args:
        default: the default value (also the flag's default); immutable (a tuple, not a list).
        help: what the option does, shown by `--help`.
        type: the flag's parser type, when `default` cannot tell (None, tuples).
        choices: allowed values.
        flag: the flag's name, when not `--<field-name>`.
        nargs: as in argparse (`"+"` for lists).

    Example: see the module docstring.
    """
    metadata = {"help": help, "type": type, "choices": choices, "flag": flag, "nargs": nargs}
    return dataclasses.field(default=default, metadata=metadata)


def add_arguments(parser, config_class, skip=()):
    """Adds one flag per field of `config_class` (a dataclass declared with `option`)."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        if field.name in skip or "help" not in field.metadata:
            continue
        meta = field.metadata
        default = field.default
        name = meta.get("flag") or "--" + field.name.replace("_", "-")
        help_text = meta["help"].replace("%", "%%")  # argparse formats help with %
        if hints.get(field.name) is bool:
            if default:  # on by default: the flag turns it off
                name = meta.get("flag") or "--no-" + field.name.replace("_", "-")
                parser.add_argument(name, dest=field.name, action="store_false",
                                    help=f"do not {help_text[0].lower()}{help_text[1:]} (default: on)")
            else:
                parser.add_argument(name, dest=field.name, action="store_true", help=help_text)
            continue
        kind = meta.get("type") or (type(default) if default is not None else str)
        shown = "" if default is None else f" (default: {_shown(default)})"
        parser.add_argument(
            name, dest=field.name, type=kind, default=default, choices=meta.get("choices"),
            nargs=meta.get("nargs"), help=help_text + shown,
        )


def check_same_settings(out, recorded, config, ignore=()):
    """Raises ValueError when `config` differs from `recorded`, the settings a finished run in `out` saved.

    For `resume` rules: a finished run is reused only with the settings it was
    trained with. `recorded` is `dataclasses.asdict` of the run's config as
    JSON read it back (lists for tuples); fields in `ignore` (the output
    folder, verbosity) do not change what a run learns. A field `recorded`
    lacks (an option added after the run) counts as its default. Paths are
    compared relative to each run's own folder, so a tree of runs that was
    copied or moved (a compress run whose stages point at each other) is
    still the same run.

    Example:

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Config:
    ...     steps: int = option(300, "training steps")
    ...     out: str = option("runs/x", "output folder")
    >>> check_same_settings("runs/x", {"steps": 300, "out": "elsewhere"}, Config(), ignore=("out",))
    >>> check_same_settings("runs/x", {"out": "runs/x"}, Config())  # steps: recorded before it existed
    >>> @dataclasses.dataclass
    ... class Stage:
    ...     mask: str = option("runs/b/prune/mask.npz", "mask")
    ...     out: str = option("runs/b/pruned", "output folder")
    >>> check_same_settings("runs/b/pruned", {"mask": "runs/a/prune/mask.npz", "out": "runs/a/pruned"}, Stage())
    >>> check_same_settings("runs/x", {"steps": 200, "out": "runs/x"}, Config())
    Traceback (most recent call last):
    ...
    ValueError: runs/x holds a finished run with other settings (steps 200 -> 300); give another output folder, or delete this one to train it again.
    """
    wanted = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON's lists
    defaults = json.loads(json.dumps(dataclasses.asdict(type(config)())))
    recorded = {**defaults, **recorded}
    differ = {k: (recorded[k], v) for k, v in wanted.items()
              if k not in ignore and not _same(recorded[k], v, recorded.get("out"), wanted.get("out"))}
    if differ:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in differ.items())
        raise ValueError(f"{out} holds a finished run with other settings ({listed}); give another output "
                         "folder, or delete this one to train it again.")


def _same(old, new, old_out, new_out):
    if old == new:
        return True
    paths = (old, new, old_out, new_out)
    if not all(isinstance(p, str) and p for p in paths) or not (os.sep in old and os.sep in new):
        return False
    return os.path.relpath(old, old_out) == os.path.relpath(new, new_out)


def _shown(default):
    if isinstance(default, (tuple, list)):
        return " ".join(str(d) for d in default)
    return str(default).replace("%", "%%")


def config_from_arguments(config_class, namespace, **overrides):
    """The config of the parsed flags (tuples for `nargs` fields), plus `overrides`."""
    values = {}
    for field in dataclasses.fields(config_class):
        if hasattr(namespace, field.name):
            value = getattr(namespace, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    values.update(overrides)
    return config_class(**values)

