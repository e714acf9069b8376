"""Inference executor building blocks: network description, software reference, mapping, GDPU.

* :mod:`procedures.inference.graph`: the numpy network description (``Graph`` and its nodes).
* :mod:`procedures.inference.reference`: float32 and int8-quantised software forward passes.
* :mod:`procedures.inference.mapping`: tiles, core allocation, folded batch norm, cost estimate.
* :mod:`procedures.inference.gdpu`: the GDPU LSTM cell (float16, piecewise-linear tanh).

numpy and drivers only (no files): ONNX files are read by ``chipctl.onnx_import``.
"""
