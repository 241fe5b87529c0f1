#!/usr/bin/env python3
"""Rewrites a static-batch YOLO ONNX export (batch 1) into one whose batch dimension is dynamic.

Usage: make_dynamic_batch.py IN.onnx OUT.onnx

Ultralytics exports without `dynamic=True` hard-code the batch in the shape constants of their
Reshape nodes ([1, 64, -1], [1, 4, 16, 8400], ...). This sets the input's and outputs' first
dimension to the symbol "batch" and turns each such leading 1 into 0 ("copy the input's
dimension", ONNX Reshape with allowzero=0), so the same weights run any batch: what zerodet's
dynamic batching (zerodet serve) and batched detection need. Reshapes of weights (bias
broadcasts) are left alone; so are graphs already dynamic. The rewrite is refused (exit 1) for a
Reshape whose leading dimension is not 1 and for end-to-end heads (YOLOv10), rather than
producing a model that silently mixes up batch entries.
Requires the 'onnx' Python package (Debian: python3-onnx).
"""
import sys

import onnx
from onnx import numpy_helper


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    model = onnx.load(argv[1])
    graph = model.graph
    # End-to-end heads (YOLOv10's TopK + GatherElements over flattened indices) compute offsets
    # that assume batch 1; no shape constant reveals it, so such graphs are refused.
    end2end = sorted({n.op_type for n in graph.node} & {"TopK", "GatherElements", "NonMaxSuppression"})
    if end2end:
        print(f"{argv[1]}: end-to-end head ({', '.join(end2end)}) assumes batch 1; export it with "
              "dynamic=True instead", file=sys.stderr)
        return 1
    weights = {init.name: init for init in graph.initializer}
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}

    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            continue
        dims[0].ClearField("dim_value")
        dims[0].dim_param = "batch"

    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] in weights:
            continue
        shape_name = node.input[1]
        if shape_name in weights:
            tensor = weights[shape_name]
        elif shape_name in constants:
            tensor = constants[shape_name].attribute[0].t
        else:
            continue  # computed from Shape ops: already follows the batch
        shape = numpy_helper.to_array(tensor).copy()
        if shape.size == 0 or shape[0] == 0:
            continue
        if shape[0] != 1:
            print(f"{argv[1]}: Reshape {node.name} has leading dimension {shape[0]}, not the "
                  "batch; refusing to rewrite", file=sys.stderr)
            return 1
        shape[0] = 0
        # A private copy: a shape constant shared with other nodes is rewritten once per user.
        name = f"{shape_name}_dynamic_batch_{rewritten}"
        graph.initializer.append(numpy_helper.from_array(shape, name))
        node.input[1] = name
        rewritten += 1
    # The batch-1 shape constants no node reads any more.
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)
    # Intermediate shape annotations still say batch 1; ONNX Runtime infers them again.
    del graph.value_info[:]
    if model.ir_version <= onnx.IR_VERSION:  # an older checker cannot read newer IR versions
        onnx.checker.check_model(model)
    onnx.save(model, argv[2])
    print(f"{argv[2]}: batch dimension dynamic ({rewritten} reshapes rewritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
