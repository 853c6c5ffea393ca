"""SQuAD v1.1: reading questions with their answer spans, and the official exact match and F1.

Three sources, one shape of output (a list of `QAExample`):

- `read_json(path)`: a file in the SQuAD v1.1 JSON layout
  (`data[].paragraphs[].{context, qas[].{id, question, answers[].{text, answer_start}}}`),
  your own data or the official `train-v1.1.json` / `dev-v1.1.json`;
- `load_tfds(split)`: tensorflow-datasets' `squad/v1.1` (downloads once);
- `fixture()`: one real SQuAD v1.1 article with 5 questions, from the
  `allennlp==0.9.0` wheel on PyPI (pinned SHA-256, read from the archive,
  never installed), for offline tests.

An answer whose text is not found at its `answer_start` in the context is
reported (a warning naming the question) and dropped; a question left with
no answer is skipped, never trained on a wrong span.

The metric is the official v1.1 evaluation, written here: answers are
lower-cased, stripped of punctuation, of the articles a/an/the and of extra
white space; exact match and token F1 take the best over the gold answers;
both are percentages averaged over questions.

Example:

>>> round(f1_score("the Denver Broncos", "Denver Broncos!"), 4), exact_match("The  cat.", "cat")
(1.0, True)
>>> evaluate({"q1": "Broncos", "q2": "1990"}, {"q1": ["Denver Broncos"], "q2": ["1990"]})
{'exact_match': 50.0, 'f1': 83.33333333333333, 'questions': 2}
"""

import collections
import dataclasses
import json
import re
import string
import warnings
import zipfile

from tf_rpp.data import packaged


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One question on one context, with its gold answers (the first is trained on).

    Attributes:
        id: the question id.
        question: the question text.
        context: the paragraph.
        answers: gold answer texts (all of them count in the metric).
        answer_starts: their character offsets in `context`.
    """

    id: str
    question: str
    context: str
    answers: tuple
    answer_starts: tuple


FIXTURE_MEMBER = "allennlp/tests/fixtures/data/squad.json"


def fixture(cache_dir=None):
    """The 5 questions of the real SQuAD v1.1 article in the `allennlp==0.9.0` wheel (SHA-256 pinned).

    Example:

    >>> len(fixture())  # doctest: +SKIP
    5
    """
    archive = packaged.fetch_archive("squad_fixture", cache_dir)
    with zipfile.ZipFile(archive) as wheel:
        return parse(json.loads(wheel.read(FIXTURE_MEMBER).decode("utf-8")), source=FIXTURE_MEMBER)


def read_json(path):
    """The examples of a SQuAD v1.1-format JSON file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not the SQuAD layout, or no answerable question.

    Example:

    ```python
    dev = tf_rpp.data.squad.read_json("dev-v1.1.json")
    ```
    """
    with open(path, encoding="utf-8") as f:
        try:
            document = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e}).") from None
    return parse(document, source=path)


def parse(document, source="<json>"):
    """Examples from a SQuAD v1.1 JSON document (a dict with `data`), checking every answer span.

    Example:

    >>> doc = {"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
    ...     {"id": "a", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    >>> parse(doc)[0].answers
    ('France',)
    """
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f"{source}: not the SQuAD layout (a JSON object with a 'data' list of articles).")
    examples, dropped = [], []
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                answers = []
                for answer in qa.get("answers", []):
                    text, start = answer.get("text", ""), answer.get("answer_start")
                    if text and isinstance(start, int) and context[start:start + len(text)] == text:
                        answers.append((text, start))
                    else:
                        dropped.append(f"{qa.get('id')}: {text!r} at {start}")
                if answers:
                    examples.append(QAExample(str(qa["id"]), qa["question"], context,
                                              tuple(a for a, _ in answers), tuple(s for _, s in answers)))
    if dropped:
        warnings.warn(f"{source}: {len(dropped)} answer(s) not found at their answer_start in the context, "
                      f"dropped (questions with no answer left are skipped): {'; '.join(dropped[:5])}"
                      + (" ..." if len(dropped) > 5 else ""), stacklevel=2)
    if not examples:
        raise ValueError(f"{source}: no question with an answer found in its context.")
    return examples


def load_tfds(split, data_dir=None):
    """SQuAD v1.1 from tensorflow-datasets (`squad/v1.1`; `split` is `"train"` or `"validation"`).

    Example:

    ```python
    dev = tf_rpp.data.squad.load_tfds("validation")   # downloads once into data_dir
    ```
    """
    from tf_rpp._optional import require

    tfds = require("tensorflow_datasets", "tfds")

    rows = tfds.load("squad/v1.1", split=split, data_dir=data_dir)
    paragraphs = collections.defaultdict(list)
    for row in tfds.as_numpy(rows):
        answers = row["answers"]
        qa = {"id": row["id"].decode(), "question": row["question"].decode(), "answers": [
            {"text": t.decode(), "answer_start": int(s)} for t, s in zip(answers["text"], answers["answer_start"])]}
        paragraphs[row["context"].decode()].append(qa)
    document = {"data": [{"paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]}
    return parse(document, source=f"tfds squad/v1.1 {split}")


def normalize_answer(text):
    """The official v1.1 normalisation: lower case, no punctuation, no articles, single spaces.

    Example:

    >>> normalize_answer("The  Denver Broncos!")
    'denver broncos'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = set(string.punctuation)


def exact_match(prediction, truth):
    """Whether the normalised prediction equals the normalised gold answer.

    Example:

    >>> exact_match("the Broncos", "Broncos")
    True
    """
    return normalize_answer(prediction) == normalize_answer(truth)


def f1_score(prediction, truth):
    """Token-overlap F1 of the normalised prediction and gold answer.

    Example:

    >>> f1_score("in 1990", "1990")
    0.6666666666666666
    """
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(predicted) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def evaluate(predictions, answers):
    """Exact match and F1 (percentages) over questions, each the best over its gold answers.

    Args:
        predictions: `{question_id: predicted text}`.
        answers: `{question_id: [gold texts]}` (or a list of `QAExample`).
            A question with no prediction scores 0, as in the official script.

    Example: see the module docstring.
    """
    if not isinstance(answers, dict):
        answers = {e.id: list(e.answers) for e in answers}
    if not answers:
        raise ValueError("evaluate needs at least one question.")
    em = f1 = 0.0
    for qid, gold in answers.items():
        if qid in predictions:
            em += max(float(exact_match(predictions[qid], g)) for g in gold)
            f1 += max(f1_score(predictions[qid], g) for g in gold)
    return {"exact_match": 100.0 * em / len(answers), "f1": 100.0 * f1 / len(answers), "questions": len(answers)}
