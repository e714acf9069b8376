"""ONNX → :class:`procedures.inference.graph.Graph`, before anything is mapped or programmed.

Takes what ``torch.onnx.export`` writes, with either exporter (TorchScript, ``dynamo=False``,
and the default dynamo exporter): the graph is first put in canonical form
(:mod:`.canonical`: the batch size fixed, ONNX shape inference, shape-only subgraphs folded with
onnx's reference evaluator), then every node is converted by the handler registered for its
operator (``ops_layers``, ``ops_elementwise``, ``ops_layout``, ``ops_recurrent``; the table of
what each supports, :func:`operator_table`, is the one in docs/inference.md, and a test keeps
them equal). Converted shapes are checked against ONNX shape inference tensor by tensor.

Errors are :class:`OnnxImportError` naming the file, the node, its operator, what is wrong and
what to do (``node '/rnn/LSTM' (LSTM): direction = bidirectional is not supported; export a
forward (unidirectional) layer, one per direction``). A file that is not a valid ONNX model
(truncated, corrupted, failing ``onnx.checker``) is refused naming the file.
"""

from chipctl.onnx_import.convert import from_model, load_onnx, operator_table
from chipctl.onnx_import.state import OPERATORS, OnnxImportError

__all__ = ["OPERATORS", "OnnxImportError", "from_model", "load_onnx", "operator_table"]
