"""Rewrite the shipped ``chipctl/models/mnist1d_lstm.onnx`` from LSTM ``layout = 1`` (which
onnxruntime's CPU LSTM refuses) to ``layout = 0`` with a Transpose on each side, the form
PyTorch exports; weights and every other node unchanged, so accuracy is unchanged.

    PYTHONPATH=. python tests/data/models/relayout_shipped_lstm.py

Idempotent: a file already at layout 0 is left as it is.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

PATH = Path(__file__).resolve().parents[3] / "chipctl" / "models" / "mnist1d_lstm.onnx"


def relayout(model: onnx.ModelProto) -> bool:
    """Rewrite every layout-1 LSTM in place; True if anything changed."""
    nodes = []
    changed = False
    read = {name for n in model.graph.node for name in n.input}
    read |= {o.name for o in model.graph.output}
    for node in model.graph.node:
        layout = next((a for a in node.attribute if a.name == "layout"), None)
        if node.op_type != "LSTM" or layout is None or layout.i != 1:
            nodes.append(node)
            continue
        changed = True
        layout.i = 0
        seq_first = f"{node.input[0]}.seq_first"
        nodes.append(
            helper.make_node(
                "Transpose", [node.input[0]], [seq_first], name=f"{node.name}.in", perm=[1, 0, 2]
            )
        )
        node.input[0] = seq_first
        outputs = list(node.output)
        nodes.append(node)
        # Y: (T, 1, N, H) -> (N, T, 1, H); Y_h, Y_c: (1, N, H) -> (N, 1, H)
        for index, perm in ((0, [2, 0, 1, 3]), (1, [1, 0, 2]), (2, [1, 0, 2])):
            if index < len(outputs) and outputs[index] and outputs[index] not in read:
                node.output[index] = ""  # unused: left out, as PyTorch does
            elif index < len(outputs) and outputs[index]:
                seq_name = f"{outputs[index]}.seq_first"
                node.output[index] = seq_name
                nodes.append(
                    helper.make_node(
                        "Transpose",
                        [seq_name],
                        [outputs[index]],
                        name=f"{node.name}.out{index}",
                        perm=perm,
                    )
                )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return changed


def main() -> None:
    model = onnx.load(str(PATH))
    if relayout(model):
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(PATH))
        print(f"{PATH}: LSTM rewritten to layout 0")
    else:
        print(f"{PATH}: already layout 0")


if __name__ == "__main__":
    main()
