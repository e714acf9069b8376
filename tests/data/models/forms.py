"""Small untrained PyTorch networks in the forms exporters write, as importer fixtures.

DEVELOPMENT TOOL ONLY (PyTorch, onnxscript). From the repository root:

    PYTHONPATH=. python tests/data/models/forms.py

writes ``forms_<name>.onnx`` (TorchScript exporter, opset 17) and ``forms_<name>.dynamo.onnx``
(default exporter) with a dynamic batch axis, torch seed 0. They are not trained: what they
check is that the importer's float32 forward equals onnxruntime's on them
(``tests/chipctl/test_onnx_runtime.py``), for the layer forms the trained models lack:

* ``recurrent``: ``nn.LSTM(num_layers=2)`` then a bidirectional ``nn.GRU``, ``h[-1]`` out;
* ``activations``: depthwise ``Conv1d`` (groups = channels), ReLU6 (Clip), sigmoid, tanh,
  multiplication by a constant, adaptive average pooling and ``x.mean(-1)``, softmax out;
* ``strided2d``: ``Conv2d`` with stride 2 and with dilation 2, ``x.view(x.size(0), -1)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

HERE = Path(__file__).resolve().parent


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
        self.gru = nn.GRU(8, 6, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.reshape(-1, 10, 4))
        _, h = self.gru(y)
        return self.fc(h[-1])


class Activations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, 8, 3, padding=1)
        self.depthwise = nn.Conv1d(8, 8, 5, padding=2, groups=8)
        self.pointwise = nn.Conv1d(8, 16, 1)
        self.bn = nn.BatchNorm1d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.relu6(self.stem(x.unsqueeze(1)))
        x = torch.sigmoid(self.depthwise(x)) * 2.0
        x = torch.tanh(self.bn(self.pointwise(x)))
        x = functional.adaptive_avg_pool1d(x, 1).flatten(1) + x.mean(-1)
        return functional.softmax(self.fc(x), dim=-1)


class Strided2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(4, 8, 3, dilation=2, padding=2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.relu(self.conv(x.view(x.size(0), 1, 8, 8)))
        x = functional.max_pool2d(self.dilated(x), 1)
        return self.fc(functional.avg_pool2d(x, 2).view(x.size(0), -1))


FORMS = {
    "recurrent": (Recurrent, 40),
    "activations": (Activations, 40),
    "strided2d": (Strided2d, 64),
}


def main() -> None:
    for name, (make, features) in FORMS.items():
        torch.manual_seed(0)
        model = make().eval()
        example = torch.randn(3, features)
        torch.onnx.export(
            model,
            (example,),
            str(HERE / f"forms_{name}.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        assert program is not None
        program.save(str(HERE / f"forms_{name}.dynamo.onnx"), external_data=False)
        print(f"forms_{name}: written")


if __name__ == "__main__":
    main()
