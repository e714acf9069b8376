"""The inference executor and its building blocks: network, reference, mapping, GDPU, chip.

* :mod:`procedures.inference.graph`: the numpy network description (``Graph`` and its nodes).
* :mod:`procedures.inference.reference`: float32 and int8-quantised software forward passes.
* :mod:`procedures.inference.mapping`: tiles, core allocation, folded batch norm, cost estimate.
* :mod:`procedures.inference.gdpu`: the GDPU LSTM cell (float16, piecewise-linear tanh).
* :mod:`procedures.inference.digital`: the number formats of the digital post-processing.
* :mod:`procedures.inference.executor`: ``ChipExecutor``, a mapped network run on the chip, with
  its parts :mod:`~procedures.inference.deployment`, :mod:`~procedures.inference.calibration`,
  :mod:`~procedures.inference.tile_programming`, :mod:`~procedures.inference.streaming` and
  :mod:`~procedures.inference.compensation`.

numpy and drivers only (no files): ONNX files are read by ``chipctl.onnx_import``.
"""
