"""Full-integer quantization of a `.tflite` for NPUs and DSPs, with Google's `ai-edge-quantizer`.

The TFLite converter's own full-integer mode (`tf_rpp.export`'s
`quantize="int8"` before this module) leaves no choice per op. LiteRT's
quantizer works on the `.tflite` itself, without TensorFlow, from a *recipe*:
a list of rules, each an op-output-name regex, an op type and a scheme, the
last matching rule winning. Two schemes here, both calibrated on real text
(static ranges of every activation):

- `"a16w8"`: int16 activations, int8 weights (`static_wi8_ai16`); the
  precision NPUs offer for transformers.
- `"int8"`: int8 activations and weights (`static_wi8_ai8`).

Each keeps the ops in `FLOAT_OPS` in float (selective quantization), the best
recipe measured on MiniLM (`bench/full_integer.py`, `docs/phone.md`).

In both, the graph's last op (the output softmax, or the logits layer) stays
float, so the file's output is float32 probabilities that MediaPipe Tasks and
`tf_rpp_lite` read as is; the token-id inputs stay int32.

Example:

```python
recipe = tf_rpp.export.quantization.recipe("a16w8", output_names=["StatefulPartitionedCall_1:0"])
tf_rpp.export.quantization.quantize_tflite("float.tflite", "a16w8.tflite", recipe, calibration_inputs)
```
"""

import copy
import re

from tf_rpp._files import atomic_write
from tf_rpp._optional import require

SCHEMES = ("a16w8", "int8")
# Ops each scheme keeps in float (selective quantization), chosen on MiniLM with
# bench/full_integer.py (docs/phone.md). The attention mask fills masked scores
# with -1e9 (SELECT_V2): quantized per tensor, that range leaves no resolution for
# the real scores and the softmax after it sees noise. Layer normalisation's
# variance and reciprocal square root (MEAN, SQUARED_DIFFERENCE, RSQRT) span
# orders of magnitude (MiniLM's embedding output has a tiny variance). All-integer
# a16w8 scored 0.135 on 200 dev sentences where Keras scores 0.89; with these five
# ops in float, 0.89.
MASK_AND_LAYERNORM = ("SELECT_V2", "SOFTMAX", "MEAN", "SQUARED_DIFFERENCE", "RSQRT")
FLOAT_OPS = {"a16w8": MASK_AND_LAYERNORM, "int8": MASK_AND_LAYERNORM}
# int8 only: the residual additions get int16 activations (their outliers), which
# gained 1 point on 200 sentences; int16 fully-connected outputs too would reach
# a16w8's accuracy at a16w8's (slow on CPU) speed.
INT16_OPS = ("ADD",)

_INTEGER = {"compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
            "min_weight_elements": 0,
            "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}}
_ACTIVATIONS = {"a16w8": {"num_bits": 16, "symmetric": True, "granularity": "TENSORWISE", "dtype": "INT"},
                "int8": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"}}


def recipe(scheme, output_names=(), float_ops=None, int16_ops=None):
    """An `ai-edge-quantizer` recipe (a list of rules) for a scheme.

    Args:
        scheme: `"a16w8"` or `"int8"`.
        output_names: names of the graph's output tensors; the ops producing
            them stay float, so outputs are float32.
        float_ops: TFLite op names kept in float everywhere (default:
            `FLOAT_OPS[scheme]`).
        int16_ops: for `"int8"`, TFLite op names given int16 activations
            instead (mixed precision; default: `INT16_OPS`).

    Example:

    >>> [rule["algorithm_key"] for rule in recipe("int8", ["probs:0"], float_ops=["GELU"])]
    ['min_max_uniform_quantize', 'no_quantize', 'no_quantize']
    """
    if scheme not in SCHEMES:
        raise ValueError(f"`scheme` must be one of {SCHEMES}; received {scheme!r}.")
    if float_ops is None:
        float_ops = FLOAT_OPS[scheme]
    if int16_ops is None:
        int16_ops = INT16_OPS if scheme == "int8" else ()

    def rule(operation, activations):
        config = copy.deepcopy(_INTEGER)
        config["activation_tensor_config"] = dict(_ACTIVATIONS[activations])
        return {"regex": ".*", "operation": operation, "algorithm_key": "min_max_uniform_quantize",
                "op_config": config}

    rules = [rule("*", scheme)] + [rule(op, "a16w8") for op in int16_ops]
    rules += [{"regex": ".*", "operation": op, "algorithm_key": "no_quantize"} for op in float_ops]
    # An op's scope is its output tensor names, each followed by ";".
    rules += [{"regex": "(^|;)" + re.escape(name) + ";", "operation": "*", "algorithm_key": "no_quantize"}
              for name in output_names]
    return rules


def output_names(path):
    """The names of a `.tflite`'s output tensors.

    Example:

    ```python
    output_names("model.tflite")   # ['StatefulPartitionedCall_1:0']
    ```
    """
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        graph = schema.Model.GetRootAs(f.read(), 0).Subgraphs(0)
    return [graph.Tensors(graph.Outputs(i)).Name().decode() for i in range(graph.OutputsLength())]


def quantize_tflite(float_path, path, rules, calibration_inputs, signature="serving_default"):
    """Quantizes a float `.tflite` with an `ai-edge-quantizer` recipe, calibrated on real inputs.

    Args:
        float_path: the float32 `.tflite` (dense weight encoding).
        path: where to write the quantized `.tflite` (atomically).
        rules: a recipe, as `recipe` makes (or any ai-edge-quantizer recipe).
        calibration_inputs: a non-empty list of input dicts for the signature,
            as `tf_rpp.export.representative_inputs` makes from real texts.
        signature: the signature the inputs feed.

    Returns:
        The size of the written file in bytes.

    Example:

    ```python
    inputs = tf_rpp.export.representative_inputs(train_texts[:200], tokenizer, 64)
    quantize_tflite("float.tflite", "a16w8.tflite", recipe("a16w8", output_names("float.tflite")), inputs)
    ```
    """
    quantizer = require("ai_edge_quantizer.quantizer", "quantize")

    calibration_inputs = list(calibration_inputs)
    if not calibration_inputs:
        raise ValueError("Full-integer quantization needs calibration inputs from real texts; received none.")
    engine = quantizer.Quantizer(float_path)
    engine.load_quantization_recipe(rules)
    calibration = engine.calibrate({signature: calibration_inputs})
    result = engine.quantize(calibration, enable_progress_bar=False, enable_progress_report=False)
    atomic_write(path, bytes(result.quantized_model))
    return len(result.quantized_model)
