"""How fast a `.tflite` runs: median latency of one inference in LiteRT's default interpreter.

The default interpreter is what a phone app gets (XNNPACK delegate on); a file
that needs another kernel path fails here, as it would in MediaPipe.

Example:

```python
latency_ms("model.tflite")               # e.g. 8.4 (batch 1, one thread)
latency_ms("model.tflite", threads=2)
```
"""

import time

import numpy as np


def latency_ms(path, threads=1, runs=20, warmup=3):
    """Median milliseconds of one inference of `path` on fixed token inputs, in LiteRT's default interpreter.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads.
        runs: timed inferences (the median is returned).
        warmup: untimed inferences first (XNNPACK packs weights on the first).

    Raises:
        RuntimeError: the default interpreter cannot prepare the file.

    Example:

    ```python
    latency_ms("model_dynamic.tflite", threads=1)
    ```
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as e:
        raise RuntimeError(f"{path}: LiteRT's default interpreter cannot prepare this file: {e}") from None
    for detail in interpreter.get_input_details():
        shape, dtype = detail["shape"], detail["dtype"]
        # A short sentence: [CLS], a few tokens, [SEP], padding (ids stay inside any vocabulary).
        value = np.zeros(shape, dtype)
        if np.issubdtype(dtype, np.integer) and len(shape) == 2:
            length = min(int(shape[1]), 12)
            value[:, :length] = 1 if "mask" in detail["name"] or "segment" not in detail["name"] else 0
        interpreter.set_tensor(detail["index"], value)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))
