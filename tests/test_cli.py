"""`tf-rpp`: every subcommand explains every flag; bad input ends in one clear line; a quiet console."""

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest

from tf_rpp import cli
from tf_rpp.pipeline import CompressConfig
from tf_rpp.pipeline import FinetuneConfig
from tf_rpp.pipeline import PruneConfig
from tf_rpp.pipeline import options

COMMANDS = ("compress", "prune", "finetune", "export", "classify", "visualize")


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")  # argparse keeps them only there
    return parser, action.choices


@pytest.mark.parametrize("command, config", [("prune", PruneConfig), ("finetune", FinetuneConfig),
                                             ("compress", CompressConfig)])
def test_every_config_field_is_a_flag_with_help_and_the_same_default(command, config):
    _, commands = _subparsers()
    sub = commands[command]
    flags = {a.dest: a for a in sub._actions}
    for field in dataclasses.fields(config):
        action = flags[field.name]
        assert action.help and len(action.help) > 15, field.name
        if not isinstance(field.default, bool):
            assert action.default == field.default, field.name
    # Parsing no flags gives exactly the Python API's defaults.
    parsed = sub.parse_args([])
    assert options.config_from_arguments(config, parsed) == config()


def test_all_subcommands_exist_and_document_their_flags():
    parser, commands = _subparsers()
    assert set(commands) == set(COMMANDS)
    for name in ("export", "visualize"):
        for action in commands[name]._actions:
            assert action.help, f"{name} {action.dest} has no help"
    assert "--target-sparsity" in commands["prune"].format_help()
    assert "--text-columns" in commands["finetune"].format_help()


def test_recipe_flags_still_parse():
    args = cli.build_parser().parse_args([
        "finetune", "--task", "glue/rte", "--no-save-model", "--export-tflite", "--structured", "0.5",
        "--data", "train.csv", "dev.csv", "--text-columns", "premise", "hypothesis"])
    config = options.config_from_arguments(FinetuneConfig, args)
    assert config.save_model is False and config.export_tflite is True and config.structured == 0.5
    assert config.data == ("train.csv", "dev.csv") and config.text_columns == ("premise", "hypothesis")


def test_speedup_fills_in_its_measured_recipe_and_refuses_a_second_choice(tmp_path):
    for speedup, recipe in (("2", (0.65, 0.35, True, None)), ("3", (0.75, 0.60, True, None)),
                            ("4", (0.65, 0.35, True, (0, 2, 4)))):
        args = cli.build_parser().parse_args(["finetune", "--speedup", speedup])
        config = options.config_from_arguments(FinetuneConfig, args).with_speedup_recipe()
        assert (config.structured, config.structured_heads, config.rewind, config.keep_layers) == recipe
        config.check()
    # Sentence pairs (a pair task, or two text columns of your own data) take the smaller model at 2x and four
    # layers with the 2x recipe at 3x.
    for argv in (["--task", "snli"], ["--data", "train.csv", "dev.csv", "--text-columns", "premise", "hypothesis"]):
        args = cli.build_parser().parse_args(["finetune", "--speedup", "3", *argv])
        config = options.config_from_arguments(FinetuneConfig, args).with_speedup_recipe()
        assert config.keep_layers == (0, 2, 3, 4) and (config.structured, config.structured_heads) == (0.65, 0.35)
        assert config.rewind
        dataclasses.replace(config, shrink=True).check()  # which-model.md's commands hold for pairs too
        args = cli.build_parser().parse_args(["finetune", "--speedup", "2", *argv])
        config = options.config_from_arguments(FinetuneConfig, args).with_speedup_recipe()
        assert config.keep_layers == (0, 2, 4) and config.structured is None and not config.rewind
        dataclasses.replace(config, shrink=True).check()
        args = cli.build_parser().parse_args(["finetune", "--speedup", "4", *argv])
        assert options.config_from_arguments(FinetuneConfig, args).with_speedup_recipe().keep_layers == (0, 2, 4)
    with pytest.raises(SystemExit):  # argparse: only measured speed-ups
        cli.build_parser().parse_args(["finetune", "--speedup", "5"])
    from tf_rpp import pipeline

    with pytest.raises(ValueError, match="--speedup chooses what to remove; do not pass --structured"):
        pipeline.finetune(speedup=3, structured=0.5, steps=1, out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def _tf_rpp():
    # The command installed with the interpreter running the tests first (PATH may name another one).
    beside = os.path.join(os.path.dirname(sys.executable), "tf-rpp")
    path = beside if os.path.exists(beside) else shutil.which("tf-rpp")
    if not path or not os.path.exists(path):
        pytest.fail("the tf-rpp command is not installed: pip install -e .")
    return path


def test_the_command_reports_bad_data_in_one_line_and_prints_no_tensorflow_noise(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([_tf_rpp(), "finetune", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"tf-rpp finetune: error: {str(tmp_path / 'nowhere')!r} is not a folder; pass a folder or two "
                     "files (train, validation)."], done.stderr
    assert not (tmp_path / "o").exists()
    # The whole recipe refuses bad data before its first stage trains, in the same one line.
    done = subprocess.run([_tf_rpp(), "compress", "--data", str(tmp_path), "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"tf-rpp compress: error: {str(tmp_path)!r} needs a train file"), \
        done.stderr
    assert not (tmp_path / "c").exists()
    # With --tf-logs TensorFlow's own start-up lines come back (they are what the default hides).
    loud = subprocess.run([_tf_rpp(), "--tf-logs", "export", "missing.keras", "x.tflite"],
                          capture_output=True, text=True, env=env, timeout=300)
    noise = [line for line in loud.stderr.splitlines() if line.strip() and not line.startswith("tf-rpp export:")]
    assert loud.returncode == 2 and noise, loud.stderr
