#!/usr/bin/env python3
"""Writes the small ONNX models the infer tests run, into the directory given as argument.

Each model keeps its image input live (0 * something of it, or a real dependency) so ONNX Runtime
cannot fold the graph away, while its output is known exactly:

  v5_const.onnx        images 1x3x64x64 -> output0 1x8x7: constant YOLOv5 rows (cx, cy, w, h,
                       obj, 2 class scores), names metadata {0: 'cat', 1: 'dog'}.
  v5_const_nometa.onnx the same rows without metadata (layout found from the shape alone).
  bad_output.onnx      images 1x3x64x64 -> output0 1x2x3: fits no YOLO layout.
  dynamic_v8.onnx      images Bx3x32x32 -> output0 Bx6x4: a v8 layout whose scores and boxes move
                       with the mean of each image, so each batch entry is told apart.
  nonzero.onnx         x 1x4 float -> indices 2x? int64 (NonZero: shape known only after Run).
  hostile_batch.onnx   images 100000x3x640x640 (a static batch needing 491 GB of input).
  hostile_imgsz.onnx   images 1x3xHxW (dynamic) with metadata imgsz [60000, 60000].
  hostile_output.onnx  images 1x3x32x32 -> output0 1x6x100000000 (2.4 GB, a static shape).
  dynamic_hw.onnx      images 1x3xHxW (dynamic, no imgsz metadata) -> output0 1x6x64 zeros.

The rows of v5_const are mirrored in the expectations of detector_test.cc; keep the two in sync.
Requires the 'onnx' Python package (Debian: python3-onnx).
"""
import os
import sys

import onnx
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 13)]

# cx, cy, w, h, obj, cls0, cls1 in 64x64 input pixels.
V5_ROWS = [
    [20.0, 20.0, 10.0, 10.0, 0.9, 0.9, 0.1],  # cat 0.81
    [21.0, 21.0, 10.0, 10.0, 0.8, 0.8, 0.1],  # cat 0.64, IoU 0.68 with row 0 -> suppressed
    [21.0, 21.0, 10.0, 10.0, 0.9, 0.1, 0.7],  # dog 0.63, kept unless class-agnostic
    [50.0, 40.0, 8.0, 12.0, 0.95, 0.3, 0.2],  # cat 0.285
    [40.0, 50.0, 6.0, 6.0, 0.3, 0.5, 0.1],  # obj passes 0.25, obj*cls 0.15 does not
    [10.0, 50.0, 6.0, 6.0, 0.2, 1.0, 0.0],  # obj 0.2 fails the objectness prefilter
    # Empty rows (objectness 0): with 8 rows the candidate axis outnumbers the 7 columns, as in
    # every real export, so the layout is v5 rows and not a 6-channel v8 output.
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
]


def save(model, directory, name, metadata=None):
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(directory, name))


def zero_of_input(prefix):
    """Nodes computing 0 * ReduceSum(images) as a 1x1x1 tensor named prefix + '_zero'."""
    return [
        helper.make_node("ReduceSum", ["images"], [prefix + "_sum"], keepdims=0),
        helper.make_node("Mul", [prefix + "_sum", "zero"], [prefix + "_zero"]),
    ]


def constant_rows_model(rows, output_shape, image_size):
    flat = [v for row in rows for v in row]
    const = helper.make_tensor("rows", TensorProto.FLOAT, output_shape, flat)
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = zero_of_input("in") + [helper.make_node("Add", ["rows", "in_zero"], ["output0"])]
    graph = helper.make_graph(
        nodes,
        "constant_rows",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, image_size, image_size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, output_shape)],
        initializer=[const, zero],
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="make_test_models.py")


def dynamic_v8_model():
    # output0[b] = base + mean(images[b]) * delta, shape B x (4 + 2) x 4.
    base = [
        [8.0, 24.0, 8.0, 24.0],  # cx
        [8.0, 8.0, 24.0, 24.0],  # cy
        [6.0, 6.0, 6.0, 6.0],  # w
        [6.0, 6.0, 6.0, 6.0],  # h
        [0.1, 0.1, 0.1, 0.1],  # class 0: 0.1 + 0.8 * mean
        [0.9, 0.9, 0.9, 0.9],  # class 1: 0.9 - 0.8 * mean
    ]
    delta = [
        [2.0, 2.0, 2.0, 2.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.8, 0.8, 0.8, 0.8],
        [-0.8, -0.8, -0.8, -0.8],
    ]
    inits = [
        helper.make_tensor("base", TensorProto.FLOAT, [1, 6, 4], [v for r in base for v in r]),
        helper.make_tensor("delta", TensorProto.FLOAT, [1, 6, 4], [v for r in delta for v in r]),
        helper.make_tensor("mean_shape", TensorProto.INT64, [3], [-1, 1, 1]),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean4", "mean_shape"], ["mean"]),
        helper.make_node("Mul", ["mean", "delta"], ["shift"]),
        helper.make_node("Add", ["base", "shift"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic_v8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, 4])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="make_test_models.py")


def nonzero_model():
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("Greater", ["x", "half"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["indices"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nonzero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("indices", TensorProto.INT64, [2, "count"])],
        initializer=[half],
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="make_test_models.py")


def hostile_input_model(input_shape):
    """A model whose output (1x6x64 zeros) does not depend on the input's size."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    rows = helper.make_tensor("rows", TensorProto.FLOAT, [1, 6, 64], [0.0] * 6 * 64)
    nodes = zero_of_input("in") + [helper.make_node("Add", ["rows", "in_zero"], ["output0"])]
    graph = helper.make_graph(
        nodes,
        "hostile_input",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])],
        initializer=[rows, zero],
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="make_test_models.py")


def hostile_output_model():
    """A static output of 1x6x100000000 floats, made by Expand (nothing stored in the file)."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    shape = helper.make_tensor("out_shape", TensorProto.INT64, [3], [1, 6, 100_000_000])
    nodes = zero_of_input("in") + [helper.make_node("Expand", ["in_zero", "out_shape"], ["output0"])]
    graph = helper.make_graph(
        nodes,
        "hostile_output",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 100_000_000])],
        initializer=[shape, zero],
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="make_test_models.py")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_test_models.py OUTPUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rows_shape = [1, len(V5_ROWS), 7]
    save(constant_rows_model(V5_ROWS, rows_shape, 64), out, "v5_const.onnx",
         {"names": "{0: 'cat', 1: 'dog'}", "imgsz": "[64, 64]", "task": "detect"})
    save(constant_rows_model(V5_ROWS, rows_shape, 64), out, "v5_const_nometa.onnx")
    bad = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    save(constant_rows_model(bad, [1, 2, 3], 64), out, "bad_output.onnx")
    save(dynamic_v8_model(), out, "dynamic_v8.onnx", {"names": "{0: 'white', 1: 'black'}"})
    save(nonzero_model(), out, "nonzero.onnx")
    two_names = {"names": "{0: 'a', 1: 'b'}"}
    save(hostile_input_model([100_000, 3, 640, 640]), out, "hostile_batch.onnx", two_names)
    save(hostile_input_model([1, 3, "height", "width"]), out, "hostile_imgsz.onnx",
         {**two_names, "imgsz": "[60000, 60000]"})
    save(hostile_output_model(), out, "hostile_output.onnx", two_names)
    save(hostile_input_model([1, 3, "height", "width"]), out, "dynamic_hw.onnx", two_names)


if __name__ == "__main__":
    main()
