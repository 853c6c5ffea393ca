"""Reliability in real processes: SIGKILL and resume, MultiWorkerMirroredStrategy.

Both run `prune_worker.py` (a tiny deterministic RPP run under
BackupAndRestore) as subprocesses, so the kill and the worker processes are
real, and compare with an uninterrupted single-process run.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import tf_rpp

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prune_worker.py")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _run(out, *flags, env=None, timeout=300):
    result = subprocess.run([sys.executable, WORKER, str(out), *flags], env=env or _env(),
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out / "final.npz", allow_pickle=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted single-process run."""
    return _run(tmp_path_factory.mktemp("reference"))


def _assert_same_run(got, expected, atol):
    assert sorted(got.files) == sorted(expected.files)
    for name in expected.files:
        if name.startswith("mask:") or name == "iterations":
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=atol, err_msg=name)
    masks = [n for n in expected.files if n.startswith("mask:")]
    pruned = sum(int((~expected[n]).sum()) for n in masks)
    total = sum(expected[n].size for n in masks)
    assert pruned == round(0.7 * total)  # the schedule's 70%, hardened exactly


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, WORKER, str(out), "--batch-sleep", "0.05"], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = out / "progress"
    deadline = time.time() + 240
    # Kill once three epochs are backed up: mid-run, inside epoch 4 of 8.
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and len(progress.read_text().split()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "final.npz").exists()
    assert (out / "backup").exists()

    resumed = _run(out)
    epochs_seen = [int(e) for e in progress.read_text().split()]
    assert epochs_seen[-1] == 7 and epochs_seen.count(epochs_seen[2] + 1) >= 1
    # Identical masks; weights within 1e-6 (op determinism makes them equal here).
    _assert_same_run(resumed, reference, atol=1e-6)
    assert tf_rpp.SparsityMask.load(out / "mask.npz").sparsity == pytest.approx(0.7, abs=1e-3)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multiworker_mirrored_two_processes_match_a_single_device_run(tmp_path, reference):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, WORKER, str(tmp_path / "multi"), "--strategy", "multiworker"],
            env=_env(TF_CONFIG=config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for process in processes:
        try:
            _, err = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, err.decode()[-3000:]
    got = np.load(tmp_path / "multi" / "final.npz", allow_pickle=False)
    # Each worker computes half of every global batch of 16; all-reduce order
    # differs from one device's sum, hence a tolerance.
    _assert_same_run(got, reference, atol=1e-5)
