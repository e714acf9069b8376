"""Plainly trained test models for the ONNX importer and the executor, exported by PyTorch.

DEVELOPMENT TOOL ONLY: needs PyTorch (CPU) and, for the dynamo exporter, onnxscript; neither the
package nor its tests import them. From the repository root:

    PYTHONPATH=. python tests/data/models/train.py              # all five models
    PYTHONPATH=. python tests/data/models/train.py --only lstm  # cnn1d, cnn2d, lstm, gru or mlp

These are networks as a user would bring them: **plain training** (no noise injection, no
quantisation, no weight clipping), ordinary ``torch.nn`` layers, exported in eval mode by
``torch.onnx.export``. Every model is written twice:

* ``<name>.onnx``: the TorchScript exporter, ``torch.onnx.export(..., dynamo=False,
  opset_version=17)`` (batch norm folded into the preceding convolution by its eval-mode
  peephole pass);
* ``<name>.dynamo.onnx``: the default (dynamo) exporter with its default opset.

Both with a dynamic batch axis. Seeds are fixed (torch and numpy seed 0); each model trains in a
minute or less on one CPU core. After export, each file is run in onnxruntime on the test set and
its logits must match PyTorch's (max |Δ| ≤ 1e-4 of the logit range); the float32 test accuracy
is printed for the README.

Data: ``chipctl.datasets``. ``mnist1d``: ``mnist1d.data.make_dataset()`` defaults (4,000 train /
1,000 test). ``digits-stratified``: scikit-learn's 1,797 images, pixel / 16, with the usual split
``train_test_split(test_size=0.3, stratify=y, random_state=0)`` (1,257 train / 540 test).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn
from torch.nn import functional

from chipctl.datasets import load_dataset

HERE = Path(__file__).resolve().parent
OPSET = 17


def digits_usual_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits, pixel / 16, the usual stratified 70/30 split (``digits-stratified``)."""
    data = load_dataset("digits-stratified")
    return data.x_train, data.y_train, data.x_test, data.y_test


def mnist1d_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_dataset("mnist1d")
    return data.x_train, data.y_train, data.x_test, data.y_test


# -- the models (each takes the data set's flat rows, as chipctl infer feeds them) -------------


class ResidualCnn1d(nn.Module):
    """MNIST-1D (40,) → (1, 40): Conv(1→32, k5) BN ReLU, MaxPool 2, residual block of two
    Conv(32→32, k3) BN, Conv(32→32, k3, stride 2) BN ReLU, Flatten (320), Linear(320→10).
    12,842 parameters in 4 convolutions and one dense layer (BN folded at export)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, 32, 5, padding=2, bias=False)
        self.bn0 = nn.BatchNorm1d(32)
        self.conv1 = nn.Conv1d(32, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(32)
        self.conv2 = nn.Conv1d(32, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(32)
        self.down = nn.Conv1d(32, 32, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm1d(32)
        self.fc = nn.Linear(320, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 40)
        x = functional.max_pool1d(functional.relu(self.bn0(self.stem(x))), 2)
        h = functional.relu(self.bn1(self.conv1(x)))
        x = functional.relu(x + self.bn2(self.conv2(h)))
        x = functional.relu(self.bn3(self.down(x)))
        return self.fc(torch.flatten(x, 1))


class Cnn2d(nn.Module):
    """Digits (64,) → (1, 8, 8): Conv(1→16, 3×3, pad 1) BN ReLU, Conv(16→32, 3×3, pad 1,
    groups 2) BN ReLU, MaxPool 2×2, Conv(32→32, 3×3, pad 1) ReLU, AvgPool 2×2, Flatten (128),
    Linear(128→10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8)
        x = functional.relu(self.bn1(self.conv1(x)))
        x = functional.max_pool2d(functional.relu(self.bn2(self.conv2(x))), 2)
        x = functional.avg_pool2d(functional.relu(self.conv3(x)), 2)
        return self.fc(torch.flatten(x, 1))


class Recurrent(nn.Module):
    """MNIST-1D (40,) → 10 steps × 4 samples → nn.LSTM or nn.GRU (hidden 64, batch_first) →
    last step's output → Linear(64→10)."""

    def __init__(self, cell: type[nn.LSTM] | type[nn.GRU]) -> None:
        super().__init__()
        self.rnn = cell(input_size=4, hidden_size=64, batch_first=True)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x.reshape(-1, 10, 4))
        return self.fc(y[:, -1])


class WideMlp(nn.Module):
    """Digits (64,) → Linear(64→320) ReLU → Linear(320→10); the hidden layer is wider than a
    core (256 rows) and is tiled."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 320), nn.ReLU(), nn.Linear(320, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


SPECS: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple], int, float]] = {
    # name: (model, data, epochs, learning rate)
    "cnn1d": (ResidualCnn1d, mnist1d_split, 40, 3e-3),
    "cnn2d": (Cnn2d, digits_usual_split, 40, 3e-3),
    "lstm": (lambda: Recurrent(nn.LSTM), mnist1d_split, 60, 1e-2),
    "gru": (lambda: Recurrent(nn.GRU), mnist1d_split, 60, 1e-2),
    "mlp": (WideMlp, digits_usual_split, 60, 3e-3),
}
FILE_STEMS = {
    "cnn1d": "mnist1d_resnet_cnn",
    "cnn2d": "digits_cnn2d",
    "lstm": "mnist1d_lstm",
    "gru": "mnist1d_gru",
    "mlp": "digits_wide_mlp",
}


def train(model: nn.Module, data: tuple, epochs: int, lr: float) -> None:
    x_train, y_train = (torch.from_numpy(a) for a in data[:2])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    batches = (len(x_train) + 63) // 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=epochs * batches)
    order_rng = np.random.default_rng(0)
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(order_rng.permutation(len(x_train)))
        for i in range(batches):
            index = order[i * 64 : (i + 1) * 64]
            loss = functional.cross_entropy(model(x_train[index]), y_train[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()


def export(model: nn.Module, example: torch.Tensor, stem: str) -> list[Path]:
    classic = HERE / f"{stem}.onnx"
    torch.onnx.export(
        model,
        (example,),
        str(classic),
        dynamo=False,
        opset_version=OPSET,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    dynamo = HERE / f"{stem}.dynamo.onnx"
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    assert program is not None
    program.save(str(dynamo), external_data=False)
    return [classic, dynamo]


def build(key: str) -> None:
    make_model, load, epochs, lr = SPECS[key]
    torch.manual_seed(0)
    data = load()
    model = make_model()
    start = time.perf_counter()
    train(model, data, epochs, lr)
    seconds = time.perf_counter() - start
    model.eval()
    x_test = torch.from_numpy(data[2])
    with torch.no_grad():
        logits = model(x_test).numpy()
    accuracy = float(np.mean(logits.argmax(1) == data[3]))
    n_weights = sum(p.numel() for p in model.parameters())
    for path in export(model, x_test[:3], FILE_STEMS[key]):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (ort,) = session.run(None, {session.get_inputs()[0].name: data[2]})
        gap = float(np.max(np.abs(ort - logits)) / np.ptp(logits))
        if gap > 1e-4:
            raise SystemExit(f"{path.name}: onnxruntime differs from PyTorch by {gap:.2e}")
        print(f"{path.name}: {path.stat().st_size} bytes, onnxruntime max |Δ| {gap:.1e} of range")
    print(
        f"{key}: {n_weights} parameters, {epochs} epochs in {seconds:.0f} s, "
        f"float32 test accuracy {100 * accuracy:.2f} % ({len(data[3])} samples)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SPECS), action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for key in args.only or list(SPECS):
        build(key)


if __name__ == "__main__":
    main()
