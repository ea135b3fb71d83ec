"""Writes the example model `model.onnx`, an input and the expected output.

A two-layer perceptron classifying 4 features into 3 classes:
    y = softmax(relu(x · W1 + b1) · W2 + b2)
Needs the `onnx` and `numpy` Python packages; Saturn itself does not.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
w1 = rng.normal(size=(4, 8)).astype(np.float32)
b1 = rng.normal(size=(8,)).astype(np.float32)
w2 = rng.normal(size=(8, 3)).astype(np.float32)
b2 = rng.normal(size=(3,)).astype(np.float32)

graph = helper.make_graph(
    [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["z0"], name="fc2"),
        helper.make_node("Add", ["z0", "b2"], ["z"], name="fc2_bias"),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1),
    ],
    "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="saturn-examples")
onnx.checker.check_model(model)
onnx.save(model, "model.onnx")

x = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -1.0, 0.0]], dtype=np.float32)
z = np.maximum(x @ w1 + b1, 0) @ w2 + b2
y = np.exp(z - z.max(axis=1, keepdims=True))
y /= y.sum(axis=1, keepdims=True)
for folder, name, arr in [("inputs", "input_0.pb", x), ("expected", "output_0.pb", y.astype(np.float32))]:
    import os
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(numpy_helper.from_array(arr).SerializeToString())
print(y)
