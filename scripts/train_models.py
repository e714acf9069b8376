"""Hardware-aware training of the shipped inference models; writes chipctl/models/*.onnx.

DEVELOPMENT TOOL ONLY: needs PyTorch (CPU), which neither the package nor its tests import.

    PYTHONPATH=. python scripts/train_models.py            # all three models
    PYTHONPATH=. python scripts/train_models.py --only cnn  # one of mlp, cnn, lstm

Hardware-aware training follows chip.md §2e ([LG Methods]; [JO]) in reduced form, with fixed
seeds; each analog layer (Linear, Conv1d, the LSTM's input and hidden matrices) in training mode:

* quantises its input to 8 bit (sign + 7 bit, 127 levels of a running max |x|; straight-through
  gradient), as the 8-bit PWM DAC does;
* adds weight noise N(0, η_w·max|W|) freshly every forward (η_w = 0.04, about twice the HERMES
  relative programming noise at mid-range conductance, chip.md §3);
* adds output noise N(0, η_y·max|y|) (η_y = 0.04 of the batch's output range; chip.md's 10 % is
  for ResNet-9 and costs too much for these small networks) and quantises the output to 8 bit
  (running max), as the ADC + LDPU int8 output does;
* clips weights to ±α·σ_W (α = 2.5 [JO]) after every optimiser step.

Evaluation and export use the clean float32 weights. The ONNX files are written with
``onnx.helper`` (opset 17) from the trained weights, so their operator set is exactly what
``chipctl.onnx_import`` documents (Gemm, Conv, BatchNormalization, Relu, Add, MaxPool, Flatten,
Reshape, Transpose, LSTM with layout = 0 between Transposes, the form PyTorch exports and
onnxruntime runs); after writing, each file is imported with ``chipctl.onnx_import`` and run
through ``procedures.inference.reference.forward`` on the test set, and the logits must match
the PyTorch eval-mode logits (max |Δ| < 1e-3 of the logit range).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional

from chipctl.datasets import Dataset, load_dataset

MODELS_DIR = Path(__file__).resolve().parents[1] / "chipctl" / "models"
OPSET = 17
ETA_W = 0.04
ETA_Y = 0.04
CLIP_ALPHA = 2.5
LSTM_STEPS = 10
LSTM_FEATURES = 4
LSTM_HIDDEN = 64


# -- hardware-aware building blocks -----------------------------------------------------------


class _RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return torch.round(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return grad


def quant8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """8-bit symmetric quantisation to 127 levels of ``scale`` (straight-through gradient)."""
    s = scale.clamp_min(1e-8) / 127.0
    return _RoundSte.apply(torch.clamp(x / s, -127.0, 127.0)) * s


class RunningMax(nn.Module):
    """Exponential running max |x| (momentum 0.9), the 8-bit range of a layer's I/O."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros(()))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        m = x.detach().abs().max()
        if self.value.item() == 0:
            self.value.copy_(m)
        else:
            self.value.mul_(0.9).add_(0.1 * m)
        return self.value


class HwAware(nn.Module):
    """Wraps the analog part of a layer: 8-bit in, noisy weights, output noise, 8-bit out."""

    def __init__(self) -> None:
        super().__init__()
        self.in_range = RunningMax()
        self.out_range = RunningMax()

    def noisy(self, w: torch.Tensor) -> torch.Tensor:
        return w + torch.randn_like(w) * ETA_W * w.detach().abs().max()

    def analog(self, x: torch.Tensor, op: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if not self.training:
            return op(x)
        x = quant8(x, self.in_range.update(x))
        y = op(x)
        y = y + torch.randn_like(y) * ETA_Y * y.detach().abs().max()
        return quant8(y, self.out_range.update(y))


class HwLinear(HwAware):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.noisy(self.lin.weight) if self.training else self.lin.weight
        return self.analog(x, lambda v: functional.linear(v, w, self.lin.bias))


class HwConv1d(HwAware):
    def __init__(self, c_in: int, c_out: int, k: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        w = self.noisy(c.weight) if self.training else c.weight
        return self.analog(x, lambda v: functional.conv1d(v, w, c.bias, padding=c.padding))


def clip_weights(model: nn.Module) -> None:
    """Clip every analog weight to ±α·σ_W after an update ([JO]: α·σ_W, α = 2.5)."""
    with torch.no_grad():
        for module in model.modules():
            for name in ("weight", "weight_ih", "weight_hh"):
                if isinstance(module, nn.Linear | nn.Conv1d | HwLstm) and hasattr(module, name):
                    w = getattr(module, name)
                    bound = CLIP_ALPHA * w.std()
                    w.clamp_(-bound, bound)


# -- the three networks -----------------------------------------------------------------------


class DigitsMlp(nn.Module):
    """64 → 128 (ReLU) → 10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = HwLinear(64, 128)
        self.fc2 = HwLinear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class ConvBn(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.conv = HwConv1d(c_in, c_out, k)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ResBlock(nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.a = ConvBn(c, c, k)
        self.b = ConvBn(c, c, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(torch.relu(self.a(x))) + x)


class Mnist1dCnn(nn.Module):
    """1-D ResNet: stem conv(1→32, k5) BN ReLU; res block (32, k3); maxpool 2; conv(32→64, k3)
    BN ReLU; res block (64, k5: unrolled 320 inputs, two cores per conv); maxpool 2; flatten
    (640) → dense 10 (three cores)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBn(1, 32, 5)
        self.block1 = ResBlock(32, 3)
        self.trans = ConvBn(32, 64, 3)
        self.block2 = ResBlock(64, 5)
        self.fc = HwLinear(640, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = functional.max_pool1d(self.block1(x), 2)
        x = torch.relu(self.trans(x))
        x = functional.max_pool1d(self.block2(x), 2)
        return self.fc(x.flatten(1))


class HwLstm(HwAware):
    """Single-layer LSTM, zero initial state, gate rows in chip order I, A, F, O (chip.md §1.6;
    A is the candidate 'g'/'c' gate)."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        bound = 1 / np.sqrt(hidden)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, n_in).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        with torch.no_grad():
            self.bias[2 * hidden : 3 * hidden] = 1.0  # forget-gate bias
        self.h_range = RunningMax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, steps, _ = x.shape
        w_ih, w_hh = self.weight_ih, self.weight_hh
        if self.training:
            w_ih, w_hh = self.noisy(w_ih), self.noisy(w_hh)
            x = quant8(x, self.in_range.update(x))
        h = x.new_zeros(n, self.hidden)
        c = x.new_zeros(n, self.hidden)
        for t in range(steps):
            z = x[:, t] @ w_ih.T + h @ w_hh.T + self.bias
            if self.training:
                z = z + torch.randn_like(z) * ETA_Y * z.detach().abs().max()
                z = quant8(z, self.out_range.update(z))
            i, a, f, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(a)
            h = torch.sigmoid(o) * torch.tanh(c)
            if self.training:
                h = quant8(h, torch.ones(()))
        return h


class Mnist1dLstm(nn.Module):
    """(40,) → (10 steps × 4 samples) → LSTM(64) → last hidden → dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = HwLstm(LSTM_FEATURES, LSTM_HIDDEN)
        self.fc = HwLinear(LSTM_HIDDEN, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x.reshape(x.shape[0], LSTM_STEPS, LSTM_FEATURES)))


# -- training ---------------------------------------------------------------------------------


def train(
    model: nn.Module,
    data: Dataset,
    shape: tuple[int, ...],
    *,
    epochs: int,
    lr: float,
    batch: int,
    seed: int,
    shift: int = 0,
) -> tuple[float, np.ndarray]:
    """Adam + cosine schedule with weight clipping; returns test accuracy and eval logits."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(data.x_train.reshape(-1, *shape))
    y = torch.from_numpy(data.y_train)
    x_test = torch.from_numpy(data.x_test.reshape(-1, *shape))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(len(y) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            xb = x[idx]
            if shift:
                xb = torch.roll(xb, int(rng.integers(-shift, shift + 1)), dims=-1)
            loss = functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            clip_weights(model)
        if (epoch + 1) % max(1, epochs // 5) == 0:
            acc, _ = evaluate(model, x_test, data.y_test)
            print(f"  epoch {epoch + 1:4d}  loss {loss.item():.3f}  test {100 * acc:.2f} %")
    return evaluate(model, x_test, data.y_test)


def evaluate(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> tuple[float, np.ndarray]:
    model.eval()
    with torch.no_grad():
        logits = model(x).numpy()
    return float(np.mean(logits.argmax(1) == y)), logits


# -- ONNX export (onnx.helper) ------------------------------------------------------------------


class OnnxWriter:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def init(self, name: str, value: torch.Tensor | np.ndarray) -> str:
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else value
        dtype = np.int64 if array.dtype.kind == "i" else np.float32
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs: object) -> str:
        outputs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def linear(self, x: str, layer: HwLinear, name: str) -> str:
        w = self.init(f"{name}.weight", layer.lin.weight)
        b = self.init(f"{name}.bias", layer.lin.bias)
        return self.node("Gemm", [x, w, b], name, transB=1)

    def conv_bn(self, x: str, block: ConvBn, name: str) -> str:
        conv = block.conv.conv
        k = conv.kernel_size[0]
        w = self.init(f"{name}.conv.weight", conv.weight)
        y = self.node(
            "Conv", [x, w], f"{name}.conv", kernel_shape=[k], pads=[k // 2, k // 2], strides=[1]
        )
        bn = block.bn
        ins = [
            y,
            self.init(f"{name}.bn.scale", bn.weight),
            self.init(f"{name}.bn.bias", bn.bias),
            self.init(f"{name}.bn.mean", bn.running_mean),
            self.init(f"{name}.bn.var", bn.running_var),
        ]
        return self.node("BatchNormalization", ins, f"{name}.bn", epsilon=bn.eps)

    def save(self, path: Path, x_shape: list[int | str], out: str, doc: str) -> None:
        graph = helper.make_graph(
            self.nodes,
            path.stem,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 10])],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="chipctl scripts/train_models.py",
            doc_string=doc,
        )
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)


def export_mlp(model: DigitsMlp, path: Path) -> None:
    w = OnnxWriter()
    h = w.node("Relu", [w.linear("input", model.fc1, "fc1")], "relu1")
    out = w.linear(h, model.fc2, "fc2")
    w.save(path, ["N", 64], out, "digits MLP 64-128-10, hardware-aware trained")


def export_cnn(model: Mnist1dCnn, path: Path) -> None:
    w = OnnxWriter()

    def block(x: str, b: ResBlock, name: str) -> str:
        a = w.node("Relu", [w.conv_bn(x, b.a, f"{name}.a")], f"{name}.relu_a")
        s = w.node("Add", [w.conv_bn(a, b.b, f"{name}.b"), x], f"{name}.add")
        return w.node("Relu", [s], f"{name}.relu")

    x = w.node("Relu", [w.conv_bn("input", model.stem, "stem")], "stem.relu")
    x = w.node(
        "MaxPool", [block(x, model.block1, "block1")], "pool1", kernel_shape=[2], strides=[2]
    )
    x = w.node("Relu", [w.conv_bn(x, model.trans, "trans")], "trans.relu")
    x = w.node(
        "MaxPool", [block(x, model.block2, "block2")], "pool2", kernel_shape=[2], strides=[2]
    )
    x = w.node("Flatten", [x], "flatten", axis=1)
    out = w.linear(x, model.fc, "fc")
    w.save(path, ["N", 1, 40], out, "MNIST-1D 1-D ResNet, hardware-aware trained")


def export_lstm(model: Mnist1dLstm, path: Path) -> None:
    w = OnnxWriter()
    lstm = model.lstm
    hid = lstm.hidden

    def onnx_order(t: torch.Tensor) -> np.ndarray:
        # ours I, A, F, O  ->  ONNX i, o, f, c
        i, a, f, o = t.detach().numpy().reshape(4, hid, *t.shape[1:])
        return np.concatenate([i, o, f, a])[None]

    shape = w.init("reshape.shape", np.array([0, LSTM_STEPS, LSTM_FEATURES], np.int64))
    x = w.node("Reshape", ["input", shape], "reshape")
    bias = np.concatenate([onnx_order(lstm.bias)[0], np.zeros(4 * hid, np.float32)])[None]
    ins = [
        x,
        w.init("lstm.W", onnx_order(lstm.weight_ih)),
        w.init("lstm.R", onnx_order(lstm.weight_hh)),
        w.init("lstm.B", bias),
    ]
    # layout = 0 (sequence first) with a Transpose on each side, the form PyTorch exports and
    # onnxruntime's CPU LSTM takes (it refuses layout = 1); Y is unused and left out.
    seq_first, y_h = f"{x}.seq_first", "lstm_out1.seq_first"
    w.nodes += [
        helper.make_node("Transpose", [x], [seq_first], name="lstm.in", perm=[1, 0, 2]),
        helper.make_node("LSTM", [seq_first, *ins[1:]], ["", y_h], name="lstm", hidden_size=hid),
        # Y_h: (1, N, H) -> (N, 1, H)
        helper.make_node("Transpose", [y_h], ["lstm_out1"], name="lstm.out1", perm=[1, 0, 2]),
    ]
    h = w.node("Flatten", ["lstm_out1"], "flatten", axis=1)
    out = w.linear(h, model.fc, "fc")
    w.save(path, ["N", 40], out, "MNIST-1D LSTM(64), 10 steps of 4 samples, HW-aware trained")


def verify(path: Path, data: Dataset, torch_logits: np.ndarray) -> float:
    """Import with chipctl and compare the numpy reference forward with PyTorch."""
    from chipctl.onnx_import import load_onnx
    from procedures.inference.reference import forward

    graph = load_onnx(path)
    logits = forward(graph, data.x_test)
    span = float(np.ptp(torch_logits))
    err = float(np.max(np.abs(logits - torch_logits)))
    if err > 1e-3 * span:
        raise SystemExit(f"{path.name}: numpy reference differs from PyTorch by {err:.3g}")
    acc = float(np.mean(logits.argmax(1) == data.y_test))
    print(f"  verified {path.name}: max |Δlogit| {err:.2e}, reference accuracy {100 * acc:.2f} %")
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", choices=("mlp", "cnn", "lstm"))
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    digits = load_dataset("digits", seed=0)
    mnist = load_dataset("mnist1d")
    jobs = {
        "mlp": (DigitsMlp, digits, (64,), {"epochs": 150, "lr": 3e-3, "batch": 64}, export_mlp),
        "cnn": (Mnist1dCnn, mnist, (1, 40), {"epochs": 60, "lr": 3e-3, "batch": 64}, export_cnn),
        "lstm": (Mnist1dLstm, mnist, (40,), {"epochs": 120, "lr": 1e-2, "batch": 64}, export_lstm),
    }
    names = {"mlp": "digits_mlp", "cnn": "mnist1d_cnn", "lstm": "mnist1d_lstm"}
    for key, (cls, data, shape, kw, export) in jobs.items():
        if args.only and key != args.only:
            continue
        print(f"{names[key]}:")
        start = time.perf_counter()
        torch.manual_seed(0)  # weight initialisation
        model = cls()
        acc, logits = train(model, data, shape, seed=0, **kw)  # type: ignore[arg-type]
        params = sum(p.numel() for p in model.parameters())
        print(f"  {params} parameters, float32 test accuracy {100 * acc:.2f} %")
        path = args.out / f"{names[key]}.onnx"
        export(model, path)  # type: ignore[operator]
        verify(path, data, logits)
        print(
            f"  {path} ({path.stat().st_size / 1024:.0f} KB), {time.perf_counter() - start:.0f} s"
        )


if __name__ == "__main__":
    main()
