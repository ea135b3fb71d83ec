"""Times ONNX Runtime on a model for `saturn bench --compare-ort`.

Reads a JSON spec (model, thread count, warm-up runs, inputs as raw
little-endian files, Saturn's outputs as raw files), makes an ONNX Runtime
CPU session with all graph optimizations, warms it up and prints one JSON
line `{"version": ...}`. Then it serves Saturn, which alternates its own
runs with ONNX Runtime's so that both see the same machine: each line
`run N` on stdin runs the model once untimed (to warm the caches up
again) and N times timed, and answers a JSON list of the latencies in ms; `finish` answers how far ONNX Runtime's outputs are from
Saturn's and ends.
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


def say(value):
    print(json.dumps(value), flush=True)


feeds = {t["name"]: load(t) for t in spec["inputs"]}
outputs = None
for _ in range(max(1, spec["warmup"])):
    outputs = sess.run(None, feeds)
say({"version": ort.__version__})

for line in sys.stdin:
    words = line.split()
    if words[:1] == ["run"]:
        # Saturn's runs left the caches cold: one untimed run first.
        sess.run(None, feeds)
        times = []
        for _ in range(int(words[1])):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        say(times)
    elif words == ["finish"]:
        break

worst_abs, worst_rel, close = 0.0, 0.0, True
for mine, theirs in zip(spec["outputs"], outputs):
    a = load(mine).astype(np.float64)
    b = np.asarray(theirs).astype(np.float64).reshape(a.shape)
    d = np.abs(a - b)
    worst_abs = max(worst_abs, float(d.max(initial=0.0)))
    worst_rel = max(worst_rel, float((d / np.maximum(np.abs(b), 1e-6)).max(initial=0.0)))
    close = close and bool(np.all(d <= spec["atol"] + spec["rtol"] * np.abs(b)))
say({"outputs_match": close, "max_abs_diff": worst_abs, "max_rel_diff": worst_rel})
