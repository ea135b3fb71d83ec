"""Times ONNX Runtime on a model for `saturn bench --compare-ort`.

Reads a JSON spec (model, thread count, runs, warm-up runs, inputs as raw
little-endian files, Saturn's outputs as raw files), runs ONNX Runtime's
CPU provider with all graph optimizations on the same inputs and prints
one JSON object: median and minimum latency, the ONNX Runtime version, and
how far its outputs are from Saturn's.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

spec = json.load(open(sys.argv[1]))
so = ort.SessionOptions()
so.intra_op_num_threads = spec["threads"]
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.log_severity_level = 3
sess = ort.InferenceSession(spec["model"], so, providers=["CPUExecutionProvider"])


def load(t):
    return np.fromfile(t["file"], dtype=t["dtype"]).reshape(t["shape"])


feeds = {t["name"]: load(t) for t in spec["inputs"]}
outputs = None
for _ in range(max(1, spec["warmup"])):
    outputs = sess.run(None, feeds)
times = []
for _ in range(spec["runs"]):
    t0 = time.perf_counter()
    sess.run(None, feeds)
    times.append((time.perf_counter() - t0) * 1e3)
times.sort()
n = len(times)
median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
worst_abs, worst_rel, close = 0.0, 0.0, True
for mine, theirs in zip(spec["outputs"], outputs):
    a = load(mine).astype(np.float64)
    b = np.asarray(theirs).astype(np.float64).reshape(a.shape)
    d = np.abs(a - b)
    worst_abs = max(worst_abs, float(d.max(initial=0.0)))
    worst_rel = max(worst_rel, float((d / np.maximum(np.abs(b), 1e-6)).max(initial=0.0)))
    close = close and bool(np.all(d <= spec["atol"] + spec["rtol"] * np.abs(b)))
print(json.dumps({
    "median_ms": median,
    "min_ms": times[0],
    "version": ort.__version__,
    "outputs_match": close,
    "max_abs_diff": worst_abs,
    "max_rel_diff": worst_rel,
}))
