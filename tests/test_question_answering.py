"""Extractive question answering: the official metric, windows, and the pipeline on a real SQuAD fixture."""

import json

import keras
import numpy as np
import pytest

import tf_rpp
from tf_rpp import models
from tf_rpp import pipeline
from tf_rpp import question_answering as qa
from tf_rpp.data import squad
from tf_rpp_lite.runner import load_interpreter


def test_exact_match_and_f1_follow_the_official_v1_1_rules():
    # Normalisation: case, punctuation, articles and spaces do not count.
    assert squad.normalize_answer("  The Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert squad.exact_match("an apple", "Apple.")
    assert not squad.exact_match("apples", "apple")
    # F1 by hand: "the cat sat on the mat" vs "cat on a mat": tokens cat sat on mat / cat on mat:
    # 3 common, precision 3/4, recall 3/3, F1 = 2 * 0.75 * 1 / 1.75.
    assert squad.f1_score("the cat sat on the mat", "cat on a mat") == pytest.approx(2 * 0.75 / 1.75)
    assert squad.f1_score("dog", "cat") == 0.0
    # Best over gold answers; a question without a prediction scores 0.
    gold = {"a": ["Denver Broncos", "Broncos"], "b": ["1990"], "c": ["Paris"]}
    scores = squad.evaluate({"a": "the Broncos", "b": "in 1990"}, gold)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def _document(context, answers):
    qas = [{"id": f"q{i}", "question": question, "answers": [{"text": text, "answer_start": start}]}
           for i, (question, text, start) in enumerate(answers)]
    return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


def test_answers_not_in_their_context_are_reported_and_skipped(tmp_path):
    context = "The tower was built in 1889 for the world fair in Paris."
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(_document(context, [
        ("When was it built?", "1889", context.index("1889")),
        ("Where?", "London", 10),          # not in the context
        ("For what?", "world fair", 3),    # in it, but not at its answer_start
    ])))
    with pytest.warns(UserWarning, match=r"2 answer\(s\) not found .*q1: 'London' at 10"):
        examples = squad.read_json(path)
    assert [e.id for e in examples] == ["q0"]
    with pytest.raises(ValueError, match="not the SQuAD layout"):
        squad.parse({"version": "1.1"})


def test_long_contexts_are_windowed_and_labels_point_at_the_answer():
    tokenizer = models.tokenizer()
    filler = " ".join(f"word{i}" for i in range(60))
    context = f"{filler} The capital of France is Paris, on the Seine. {filler}"
    example = squad.QAExample("x", "What is the capital of France?", context, ("Paris",), (context.index("Paris"),))
    windows = qa.windows([example], tokenizer, sequence_length=48)
    assert len(windows) > 3
    labelled = [w for w in windows if w.label != (0, 0)]
    assert labelled
    vocabulary = tokenizer.get_vocabulary()
    for w in labelled:
        start, end = w.label
        assert [vocabulary[i] for i in w.features["token_ids"][start:end + 1]] == ["paris"]
        assert context[w.char_spans[start][0]:w.char_spans[end][1]] == "Paris"
    # The best span over all windows wins: logits that favour the answer in one window.
    logits = np.zeros((len(windows), 2, 48), "float32")
    window = next(i for i, w in enumerate(windows) if w is labelled[0])
    logits[window, :, labelled[0].label[0]] = 5.0
    assert qa.best_answers([example], windows, logits) == {"x": "Paris"}


def test_squad_pipeline_learns_the_fixture_holds_the_mask_and_exports(small_preset, tmp_path):
    fixture = squad.fixture()
    assert len(fixture) == 5 and fixture[0].answers[0] == "Saint Bernadette Soubirous"
    tokenizer = models.tokenizer(small_preset)
    windows = qa.windows(fixture, tokenizer, 64)
    keras.utils.set_random_seed(0)
    untrained = qa.SpanClassifier(models.backbone(small_preset))
    before = squad.evaluate(qa.best_answers(fixture, windows, untrained.predict(
        qa.to_dataset(windows, untrained, labels=False).batch(32), verbose=0)), fixture)

    weights = {tf_rpp.selection.weight_key(v): v.numpy() for v in tf_rpp.selection.select_weights(untrained)}
    mask_path = str(tmp_path / "mask.npz")
    tf_rpp.SparsityMask.from_magnitudes(weights, 0.5).save(mask_path)
    result = pipeline.finetune(task="squad", preset=small_preset, mask=mask_path, sequence_length=64, steps=80,
                               batch_size=8, learning_rate=1e-3, out=str(tmp_path / "qa"), export_tflite=True,
                               verbose=0)
    assert result.mask_held and result.mask_sparsity == pytest.approx(0.5, abs=0.01)
    assert before["f1"] < 20 and result.metrics["f1"] > before["f1"] + 50, (before, result.metrics)

    model = keras.models.load_model(result.model_path)
    assert isinstance(model, qa.SpanClassifier)
    x = next(iter(qa.to_dataset(windows, model, labels=False).batch(1)))
    interpreter, _ = load_interpreter(result.tflite_path)
    (output,) = interpreter.get_signature_runner()(**{k: v.numpy() for k, v in x.items()}).values()
    np.testing.assert_allclose(output, model.predict(x, verbose=0), atol=1e-4)
