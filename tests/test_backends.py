"""RPP, masks, structured pruning, shrinking and distillation on JAX and PyTorch as on TensorFlow.

Each backend runs `tests/backend_worker.py` in its own process (Keras fixes the
backend at import); this process (TensorFlow) compares their reports and loads
the `.keras` files they saved.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tf_rpp

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
ROOT = os.path.dirname(os.path.dirname(WORKER))


def _run(backend, out, *parts, extra_env=None):
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, **(extra_env or {})}
    done = subprocess.run([sys.executable, WORKER, str(out), *parts], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _backend_or_skip(backend):
    module = {"jax": "jax", "torch": "torch"}[backend]
    if importlib.util.find_spec(module) is None:
        hint = '"tf_rpp[jax]"' if backend == "jax" else "torch (a CPU build: pip install torch==2.13.0 here)"
        pytest.skip(f"{backend} is not installed: pip install {hint}")


@pytest.fixture(scope="module")
def tensorflow_report(tmp_path_factory):
    return _run("tensorflow", tmp_path_factory.mktemp("tensorflow"), "unstructured", "distillation")


@pytest.fixture(scope="module")
def backend_report(tmp_path_factory):
    """`get(backend)`: the worker's full report on `backend` and its folder, run once per module."""
    reports = {}

    def get(backend):
        if backend not in reports:
            out = tmp_path_factory.mktemp(backend)
            reports[backend] = (_run(backend, out), out)
        return reports[backend]

    return get


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_pruning_works_on_the_backend_as_on_tensorflow(backend, tensorflow_report, backend_report):
    _backend_or_skip(backend)
    report, tmp_path = backend_report(backend)
    assert report["backend"] == backend
    rpp = report["unstructured"]
    # The same schedule reaches the same sparsity; the RPP steps made most of it; the mask held.
    assert rpp["frozen"] and rpp["mask_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert rpp["mask_sparsity"] == pytest.approx(tensorflow_report["unstructured"]["mask_sparsity"], abs=1e-3)
    assert rpp["sparsity_before_hardening"] >= 0.9 * 0.5, rpp
    assert rpp["mask_held"] and rpp["sparsity"] >= rpp["mask_sparsity"]
    assert report["fixed_mask"]["mask_held"] and report["fixed_mask"]["sparsity"] >= 0.7 - 1e-3
    # AdamW's update is elementwise on every backend: no pass to zero the pruned gradients.
    assert report["fixed_mask"]["masks_gradients"] is False
    # Structured: half the heads and one of two feed-forward blocks removed; the shrunk model computes the
    # masked one.
    structured = report["structured"]
    assert structured["frozen"] and structured["removed"] == {"heads": 0.5, "feedforward": 0.5}
    assert sorted(structured["intermediate"])[0] == 0 and sorted(structured["intermediate"])[1] > 0
    assert structured["shrunk_max_diff"] < 1e-5
    assert report["distillation"]["value"] == pytest.approx(tensorflow_report["distillation"]["value"], rel=1e-5)
    # A .keras saved on the backend loads on TensorFlow with the same mask and logits.
    model = tf_rpp.load_model(rpp["path"], compile=False)
    mask = tf_rpp.SparsityMask.load(os.path.join(tmp_path, "rpp_mask.npz"))
    loaded = tf_rpp.SparsityMask.from_model(model, prune=mask.keys)
    assert all(np.all(~loaded[k] | mask[k]) for k in mask.keys)
    from backend_worker import INPUTS

    np.testing.assert_allclose(np.asarray(model(INPUTS)), np.asarray(rpp["logits"]), atol=1e-5)
    # The backend's model exports to the same kind of .tflite, computing its logits.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=report["export"]["path"])
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        name = next(n for n in INPUTS if n in detail["name"])
        interpreter.set_tensor(detail["index"], INPUTS[name][:1])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(report["export"]["logits"]), atol=1e-4)
    shrunk = tf_rpp.load_model(structured["path"], compile=False)
    counts = tf_rpp.structured.parameter_counts(shrunk.backbone)
    assert (counts["heads"], counts["intermediate"]) == (structured["heads"], structured["intermediate"])
    np.testing.assert_allclose(np.asarray(shrunk(INPUTS)), np.asarray(structured["logits"]), atol=1e-5)


def test_jax_data_parallel_over_two_devices_learns_the_mask_of_one(backend_report, tmp_path):
    _backend_or_skip("jax")
    _, one = backend_report("jax")  # its first part is the same unstructured run, on one device
    two = _run("jax", tmp_path / "two", "unstructured", extra_env={
        # XLA ends a CPU all-reduce whose two device threads do not meet within 40 s; on a loaded 2-core
        # machine one can lag that long, so the test allows 10 minutes.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_cpu_collective_call_terminate_timeout_seconds=600",
        "TF_RPP_TEST_DATA_PARALLEL": "1"})
    assert two["devices"] == 2
    first = tf_rpp.SparsityMask.load(one / "rpp_mask.npz")
    second = tf_rpp.SparsityMask.load(tmp_path / "two" / "rpp_mask.npz")
    agree = np.mean(np.concatenate([(first[k] == second[k]).ravel() for k in first.keys]))
    assert agree > 0.99, agree
    assert second.sparsity == pytest.approx(first.sparsity, abs=1e-3)


def _command(out_dir, *argv, environ=None):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_RPP_QUIET": "1", **(environ or {})}
    env.pop("KERAS_BACKEND", None)  # --backend alone chooses
    return subprocess.run([sys.executable, "-c", "from tf_rpp import cli; cli.main()", *argv], capture_output=True,
                          text=True, env=env, timeout=900, cwd=str(out_dir))


def test_the_whole_pipeline_runs_on_jax_with_one_flag(small_preset, tmp_path):
    # tf-rpp compress --backend jax: dense fine-tune, RPP upstream, masked fine-tune, .tflite files.
    _backend_or_skip("jax")
    done = _command(tmp_path, "compress", "--backend", "jax", "--preset", small_preset, "--out", "run", "--steps", "4",
                    "--batch-size", "8", "--sequence-length", "32", "--pruned-steps", "4", "--pruned-batch-size",
                    "8", "--prune-steps", "6", "--prune-sequence-length", "32", "--sparsity", "0.5", "--verbose", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Keras on jax" in done.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backend"] == "jax"
    assert json.loads((tmp_path / "run" / "prune" / "report.json").read_text())["backend"] == "jax"
    assert summary["pruned"]["mask_held"] is True
    mask = tf_rpp.SparsityMask.load(tmp_path / "run" / "prune" / "mask.npz")
    assert mask.sparsity == pytest.approx(0.5, abs=1e-6)
    # The model trained on JAX loads here (TensorFlow) with its zeros where the mask says.
    model = tf_rpp.load_model(str(tmp_path / "run" / "pruned" / "model.keras"), compile=False)
    after = tf_rpp.SparsityMask.from_model(model.backbone, prune=mask.keys)
    assert all(bool(np.all(~after[k] | mask[k])) for k in mask.keys)
    from ai_edge_litert.interpreter import Interpreter

    written = [entry["path"] for entries in summary["files"].values() for entry in entries if entry]
    assert len(written) == 3  # float32 dense and pruned, dynamic int8 pruned
    for path in written:
        interpreter = Interpreter(model_path=str(tmp_path / path))
        interpreter.allocate_tensors()
        assert interpreter.get_output_details()[0]["shape"][-1] == 2


def test_a_tensorflow_only_option_on_another_backend_is_refused_before_any_work(tmp_path):
    _backend_or_skip("jax")
    done = _command(tmp_path, "prune", "--backend", "jax", "--strategy", "mirrored", "--out", "run")
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "'mirrored'" in last and "'jax'" in last and "DataParallel" in last, last
    assert not (tmp_path / "run").exists()
