"""End to end on the real packaged data, on a small slice: prune, then fine-tune.

Through the Python API (`tf_rpp.pipeline`) that `tf-rpp` and the recipes call, on a
2-layer preset folder with MiniLM's tokenizer (`small_preset`): the same code path as
the embedded MiniLM (`tests/test_lite.py` exports the real MiniLM) at a fraction of its cost.
"""

import json
import os
import shutil

import numpy as np
import pytest

import tf_rpp
from tf_rpp import data
from tf_rpp import models
from tf_rpp import saving
from recipes import glue_finetune
from recipes import pretrain_prune
from tf_rpp import pipeline
from tf_rpp.data.tasks import accuracy
from test_data import write_tsv

# jit_compile off: these check the flow, and XLA compiles cost ~30 s a model here; the structured
# test runs through the recipe with the default (XLA) train step.
SMALL = dict(batch_size=8, sequence_length=32, verbose=0, jit_compile=False)


def test_a_preset_with_a_trained_mlm_head_is_loaded_whole_and_pruned_on_mlm(tmp_path, small_preset):
    head = models.masked_lm(small_preset, sequence_length=16)
    head.save_to_preset(str(tmp_path / "mlm"))
    assert models.has_mlm_head(str(tmp_path / "mlm")) and not models.has_mlm_head("minilm")
    loaded = models.masked_lm(str(tmp_path / "mlm"), sequence_length=16)
    for saved, read in zip(head.masked_lm_head.weights, loaded.masked_lm_head.weights):
        np.testing.assert_array_equal(saved.numpy(), read.numpy())
    result = pipeline.prune(preset=str(tmp_path / "mlm"), out=str(tmp_path / "p"), steps=4, steps_per_epoch=4,
                            frequency=2, warmup_steps=0, target_sparsity=0.5, eval_texts=16, **SMALL)
    assert result.objective == "mlm" and 0.0 <= result.mlm_accuracy_after <= 1.0


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, small_preset):
    out = tmp_path_factory.mktemp("prune")
    result = pipeline.prune(objective="mlm", out=str(out), preset=small_preset, target_sparsity=0.5, steps=12,
                            steps_per_epoch=4, frequency=2, warmup_steps=2, eval_texts=32, distill=10, **SMALL)
    return out, result


def test_pretrain_prune_writes_mask_preset_and_report(pruned, small_preset):
    out, result = pruned
    assert result.mask_path == str(out / "mask.npz") and result.preset_dir == str(out / "preset")
    mask = tf_rpp.SparsityMask.load(result.mask_path)
    assert mask.sparsity == pytest.approx(0.5, abs=1e-6)
    assert len(mask) == 12  # 6 kernels x 2 layers
    assert result.sparsity == pytest.approx(mask.sparsity)
    assert 0.0 < result.distill_loss_last_epoch < 1.0  # the main job's upstream distillation ran
    assert 0.0 <= result.mlm_accuracy_before <= 1.0 and 0.0 <= result.mlm_accuracy_after <= 1.0
    assert (out / "preset" / "config.json").exists() and (out / "sparsity_report.txt").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["pruned_weights"] == mask.num_pruned
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(out / "logs"))
    # The saved preset is the pruned backbone: its zeros are the mask's.
    backbone = models.backbone(str(out / "preset"))
    assert tf_rpp.SparsityMask.from_model(backbone).num_pruned >= mask.num_pruned
    # Embeddings stay as pretrained (the tied MLM head must not drag them); the encoder moved.
    original = models.backbone(small_preset)
    np.testing.assert_array_equal(backbone.token_embedding.embeddings.numpy(),
                                  original.token_embedding.embeddings.numpy())
    np.testing.assert_array_equal(backbone.segment_embedding.embeddings.numpy(),
                                  original.segment_embedding.embeddings.numpy())
    key = "transformer_layer_0/feedforward_intermediate_dense/kernel"
    assert not np.array_equal(dict((v.path, v) for v in backbone.weights)[key].numpy(),
                              dict((v.path, v) for v in original.weights)[key].numpy())


def test_resume_reuses_a_finished_run_and_refuses_other_settings(pruned, small_preset, tmp_path):
    # The main job calls prune(resume=True) again after an interrupted fine-tune: no second training.
    out, result = pruned
    settings = dict(objective="mlm", out=str(out), preset=small_preset, target_sparsity=0.5, steps=12,
                    steps_per_epoch=4, frequency=2, warmup_steps=2, eval_texts=32, distill=10, **SMALL)
    stamp = os.path.getmtime(out / "report.json")
    again = pipeline.prune(resume=True, **dict(settings, verbose=2))
    assert again == result and os.path.getmtime(out / "report.json") == stamp
    with pytest.raises(ValueError, match=r"other settings \(steps 12 -> 24\)"):
        pipeline.prune(resume=True, **dict(settings, steps=24))
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    copy = pipeline.prune(resume=True, **dict(settings, out=str(moved)))
    assert copy.mask_path == str(moved / "mask.npz") and copy.preset_dir == str(moved / "preset")
    assert copy.sparsity == result.sparsity and copy.wall_time_s == result.wall_time_s
    # A folder holding only a warm-up (bench/rpp_vs_nip.py copies one run's into the next) trains.
    fresh = tmp_path / "warm"
    fresh.mkdir()
    for name in ("report.json", "warmup.weights.h5"):
        shutil.copy(out / name, fresh / name)
    other = pipeline.prune(resume=True, **dict(settings, out=str(fresh), steps=8))
    assert other.mask_path == str(fresh / "mask.npz") and other.mlm_accuracy_before == result.mlm_accuracy_before


def test_upstream_task_agnostic_distillation_objective(tmp_path, small_preset):
    # No MLM head and no warm-up: the pruned encoder matches the dense preset's layer outputs.
    # The default objective picks it for a preset that ships no trained MLM head.
    assert not models.has_mlm_head(small_preset)
    result = pipeline.prune(preset=small_preset, out=str(tmp_path / "p"), steps=10, steps_per_epoch=5, frequency=5,
                            target_sparsity=0.5, eval_texts=16, **SMALL)
    assert result.objective == "distill" and result.mlm_accuracy_after is None
    assert result.sparsity == pytest.approx(0.5, abs=1e-3)
    assert 0.0 < result.layer_error_after < 1.0
    assert not os.path.exists(tmp_path / "p" / "warmup.weights.h5")
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["args"]["objective"] == "distill" and report["layer_error_after"] == result.layer_error_after
    _finetune_and_check(tmp_path / "p", tmp_path / "ft")


def test_upstream_rewind_writes_the_presets_values_under_the_mask(tmp_path, small_preset):
    # end_fraction 1: the mask becomes final at the last step, so nothing trains after the rewind.
    result = pipeline.prune(preset=small_preset, out=str(tmp_path / "p"), steps=6, steps_per_epoch=3, frequency=2,
                            target_sparsity=0.5, eval_texts=16, end_fraction=1.0, rewind=True, **SMALL)
    mask = tf_rpp.SparsityMask.load(result.mask_path)
    assert mask.sparsity == pytest.approx(0.5, abs=1e-3)
    pruned = {v.path: v.numpy() for v in models.backbone(result.preset_dir).weights}
    original = {v.path: v.numpy() for v in models.backbone(small_preset).weights}
    for key in mask.keys:
        np.testing.assert_array_equal(pruned[key], np.where(mask[key], original[key], 0.0))
    with pytest.raises(ValueError, match="--rewind acts"):
        pipeline.prune(rewind=True, l1_strength=1e-3, out=str(tmp_path / "x"))


@pytest.fixture(scope="module")
def dense_teacher(tmp_path_factory, small_preset):
    out = tmp_path_factory.mktemp("teacher")
    result = pipeline.finetune(task="rt_polarity", preset=small_preset, out=str(out), steps=4, eval_limit=16, **SMALL)
    assert result.model_path == str(out / "model.keras") and result.label_names == ["negative", "positive"]
    saved = np.load(result.predictions_path)  # the dev predictions, for comparing runs example by example
    assert len(saved["labels"]) == 16 and accuracy(saved["labels"], saved["predictions"]) == result.metrics["accuracy"]
    return out / "model.keras"


def test_finetune_resume_reuses_a_finished_run_and_refuses_other_settings(dense_teacher, small_preset, tmp_path):
    # The main job fine-tunes with resume=True: run again, it keeps the models it finished.
    out = dense_teacher.parent
    settings = dict(task="rt_polarity", preset=small_preset, out=str(out), steps=4, eval_limit=16, **SMALL)
    stamp = os.path.getmtime(out / "results.json")
    written = json.loads((out / "results.json").read_text())
    again = pipeline.finetune(resume=True, **dict(settings, verbose=2))
    assert again.metrics == written["metrics"] and again.model_path == str(dense_teacher)
    assert os.path.getmtime(out / "results.json") == stamp
    with pytest.raises(ValueError, match=r"other settings \(learning_rate 0.0001 -> 0.0006\)"):
        pipeline.finetune(resume=True, **dict(settings, learning_rate=6e-4))
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    copy = pipeline.finetune(resume=True, **dict(settings, out=str(moved)))
    assert copy.model_path == str(moved / "model.keras") and copy.metrics == again.metrics
    assert copy.predictions_path == str(moved / "predictions.npz")
    # Results written before settings were recorded cannot be compared: the run trains again.
    del written["args"]
    (moved / "results.json").write_text(json.dumps(written))
    retrained = pipeline.finetune(resume=True, **dict(settings, out=str(moved)))
    assert "args" in json.loads((moved / "results.json").read_text()) and retrained.model_path == copy.model_path


def test_finetune_can_keep_the_embeddings_as_loaded(small_preset, tmp_path):
    result = pipeline.finetune(task="rt_polarity", preset=small_preset, out=str(tmp_path), steps=3, eval_limit=16,
                               freeze_embeddings=True, **SMALL)
    loaded = {v.path: v.numpy() for v in models.backbone(small_preset).weights}
    trained = {v.path: v.numpy() for v in saving.load_model(result.model_path, compile=False).backbone.weights}
    embeddings = [k for k in loaded if "embedding" in k]
    assert any("token_embedding" in k for k in embeddings)
    assert all(np.array_equal(loaded[k], trained[k]) for k in embeddings)
    assert not all(np.array_equal(loaded[k], trained[k]) for k in loaded if "transformer_layer" in k)


def test_finetune_keeps_the_layers_asked_and_distils_them_from_the_full_model(dense_teacher, pruned, tmp_path):
    # Layer dropping, the baseline a structured model must beat: the dense model with layer 1 only.
    result = pipeline.finetune(task="rt_polarity", init_model=str(dense_teacher), keep_layers=(1,),
                               teacher=str(dense_teacher), teacher_layers=10, out=str(tmp_path), steps=3,
                               eval_limit=16, export_tflite=True, **SMALL)
    assert result.keep_layers == [1] and 0.0 <= result.metrics["accuracy"] <= 1.0
    small = saving.load_model(result.model_path, compile=False)
    full = saving.load_model(str(dense_teacher), compile=False)
    assert len(small.backbone.transformer_layers) == 1 and len(full.backbone.transformer_layers) == 2
    assert small.backbone.count_params() < full.backbone.count_params()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=result.tflite_path)
    interpreter.allocate_tensors()
    assert interpreter.get_output_details()[0]["shape"][-1] == 2
    # Both at once: the kept layer's heads and neurons pruned too, then shrunk to the same logits.
    both = pipeline.finetune(task="rt_polarity", init_model=str(dense_teacher), keep_layers=(1,), structured=0.5,
                             rewind=True, teacher=str(dense_teacher), teacher_layers=10, shrink=True,
                             out=str(tmp_path / "both"), steps=6, pruning_steps=4, eval_limit=16, **SMALL)
    assert both.keep_layers == [1] and both.mask_held is True and both.removed_groups["heads"] >= 0.5
    assert len(both.shrunk["heads"]) == 1  # one layer of 4 heads and 128 neurons left to shrink
    assert sum(both.shrunk["intermediate"]) == round(128 * (1 - both.removed_groups["neurons"]))
    masked = saving.load_model(str(tmp_path / "both" / "model.keras"), compile=False)
    shrunk = saving.load_model(str(tmp_path / "both" / "model_shrunk.keras"), compile=False)
    texts = ["a wonderful, moving film", "dull and far too long"]
    np.testing.assert_allclose(shrunk.predict(texts, verbose=0), masked.predict(texts, verbose=0), atol=1e-5)
    out, _ = pruned
    with pytest.raises(ValueError, match="--keep-layers trains a smaller model"):
        pipeline.finetune(task="rt_polarity", keep_layers=(0,), mask=str(out / "mask.npz"), out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="distinct, ascending indices in \\[0, 2\\)"):
        pipeline.finetune(task="rt_polarity", init_model=str(dense_teacher), keep_layers=(0, 2), steps=1,
                          eval_limit=16, out=str(tmp_path / "y"), **SMALL)


def test_glue_finetune_distils_from_a_dense_teacher(pruned, dense_teacher, tmp_path):
    out, _ = pruned
    result = _finetune_and_check(out, tmp_path / "student", teacher=str(dense_teacher), distill_alpha=0.7,
                                 teacher_layers=10)
    assert result.teacher == str(dense_teacher) and result.teacher_layers == 10.0


def test_layer_distillation_on_a_sentence_pair_task(pruned, dense_teacher, small_preset, tmp_path):
    # Pairs are the case keras-hub's preprocessor could misread: a bare (premise, hypothesis) tuple as (x, y).
    rte = tmp_path / "RTE"
    rte.mkdir()
    pairs = data.snli_examples("validation")[:96]
    for name, rows in (("train.tsv", pairs[:64]), ("dev.tsv", pairs[64:])):
        write_tsv(rte / name, ["index", "sentence1", "sentence2", "label"],
                  [[i, p, h, "entailment" if y == 0 else "not_entailment"] for i, (p, h, y) in enumerate(rows)])
    common = pipeline.FinetuneConfig(task="glue/rte", tsv_dir=str(rte), steps=10, preset=small_preset, **SMALL)
    out, _ = pruned
    # Any 2-class classifier of the same shape teaches; the pairs must reach both models as pairs.
    result = pipeline.finetune(common, out=str(tmp_path / "student"), preset=str(out / "preset"),
                               mask=str(out / "mask.npz"), teacher=str(dense_teacher), teacher_layers=10)
    assert result.mask_held is True and result.validation_examples == 32
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_glue_finetune_structured_prunes_shrinks_and_exports(dense_teacher, tmp_path):
    # Through the recipe's command line, as a user runs it: the default XLA-compiled train step.
    result = glue_finetune.main([
        "--task", "rt_polarity", "--init-model", str(dense_teacher), "--teacher", str(dense_teacher),
        "--structured", "0.5", "--structured-heads", "0.25", "--structured-blocks", "0.5", "--steps", "8",
        "--pruning-steps", "6", "--shrink", "--export-tflite",
        "--out", str(tmp_path), "--batch-size", "8", "--sequence-length", "32", "--eval-limit", "32",
        "--verbose", "0"])
    # 2 layers x 4 heads, 2 x 128 neurons: one of the two attention blocks and one of the two feed-forward
    # blocks removed whole, and with them at least the heads' and neurons' own targets.
    removed = result.removed_groups
    assert removed["attention"] == 0.5 and removed["feedforward"] == 0.5
    assert removed["heads"] >= 0.5 and removed["neurons"] >= 0.5
    assert result.mask_held is True and result.structured_heads == 0.25 and result.structured_blocks == 0.5
    assert 0 in result.shrunk["heads"] and 0 in result.shrunk["intermediate"]
    assert sum(result.shrunk["heads"]) == round(8 * (1 - removed["heads"]))
    assert sum(result.shrunk["intermediate"]) == round(256 * (1 - removed["neurons"]))
    assert result.shrunk["total_parameters"] < result.dense_parameters
    masked = tf_rpp.load_model(tmp_path / "model.keras", compile=False)
    small = tf_rpp.load_model(tmp_path / "model_shrunk.keras", compile=False)
    texts = ["a wonderful, moving film", "dull and far too long", "it is what it is"]
    np.testing.assert_allclose(small.predict(texts, verbose=0), masked.predict(texts, verbose=0), atol=1e-5)
    assert result.tflite_bytes == os.path.getsize(tmp_path / "model.tflite")
    with pytest.raises(ValueError, match="--shrink needs --structured"):
        pipeline.finetune(init_model=str(dense_teacher), shrink=True, steps=1, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="--structured-heads needs --structured"):
        pipeline.finetune(structured_heads=0.3, steps=1, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match=r"--structured-heads is a fraction in \[0, 1\)"):
        pipeline.finetune(structured=0.5, structured_heads=1.0, steps=1, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="--structured-blocks needs --structured"):
        pipeline.finetune(structured_blocks=0.5, steps=1, out=str(tmp_path / "x"))


def test_downstream_unstructured_pruning_from_the_dense_model(dense_teacher, tmp_path):
    # The dense fine-tuned model pruned on the task itself, distilling it; the kept weights rewound.
    result = pipeline.finetune(task="rt_polarity", init_model=str(dense_teacher), teacher=str(dense_teacher),
                               teacher_layers=10, sparsity=0.5, method="rpp", rewind=True, steps=6,
                               pruning_steps=4, eval_limit=32, out=str(tmp_path), **SMALL)
    assert result.mask_held is True and result.sparsity == 0.5 and result.method == "rpp"
    mask = tf_rpp.SparsityMask.load(tmp_path / "mask.npz")
    assert mask.sparsity == pytest.approx(0.5, abs=1e-3) and result.mask_sparsity == mask.sparsity
    classifier = tf_rpp.load_model(tmp_path / "model.keras", compile=False)
    after = tf_rpp.SparsityMask.from_model(classifier, prune=mask.keys)
    assert all(np.all(~after[k] | mask[k]) for k in mask.keys)
    with pytest.raises(ValueError, match="--rewind needs"):
        pipeline.finetune(init_model=str(dense_teacher), rewind=True, steps=1, out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="not both"):
        pipeline.finetune(sparsity=0.5, structured=0.5, steps=1, out=str(tmp_path / "x"))


def _finetune_and_check(out, tmp_path, **extra):
    result = pipeline.finetune(task="rt_polarity", preset=str(out / "preset"), mask=str(out / "mask.npz"),
                               out=str(tmp_path), steps=6, eval_limit=64, **SMALL, **extra)
    assert result.mask_held is True
    assert result.zero_weights_after >= result.pruned_weights
    assert result.validation_examples == 64
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["metrics"] == result.metrics
    classifier = tf_rpp.load_model(tmp_path / "model.keras")
    mask = tf_rpp.SparsityMask.load(out / "mask.npz")
    after = tf_rpp.SparsityMask.from_model(classifier, prune=mask.keys)
    assert all(np.all(~after[k] | mask[k]) for k in mask.keys)
    return result


def test_recipes_reject_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--target-sparsity must be in"):
        pretrain_prune.main(["--out", str(tmp_path), "--target-sparsity", "1.0"])
    with pytest.raises(ValueError, match="--structured is a fraction in"):
        glue_finetune.main(["--out", str(tmp_path), "--structured", "1.0"])
    with pytest.raises(ValueError, match="--sparsity is a fraction in"):
        glue_finetune.main(["--out", str(tmp_path), "--sparsity", "0"])
    with pytest.raises(ValueError, match="--pruning-steps must be in"):
        pipeline.finetune(out=str(tmp_path), sparsity=0.5, steps=10, pruning_steps=20)
    with pytest.raises(ValueError, match="--teacher-layers is a weight"):
        pipeline.finetune(out=str(tmp_path), teacher_layers=5)
    with pytest.raises(ValueError, match="--distill must be >= 0"):
        pipeline.prune(out=str(tmp_path), distill=-1)
    with pytest.raises(ValueError, match="Unknown task"):
        pipeline.finetune(out=str(tmp_path), task="sst9")
    with pytest.raises(FileNotFoundError, match="--mask 'nowhere.npz'"):
        pipeline.finetune(out=str(tmp_path), mask="nowhere.npz")
    assert not any(tmp_path.iterdir())  # refused before anything was written
