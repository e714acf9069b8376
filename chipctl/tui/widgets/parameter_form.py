"""A form generated from a procedure's ``Parameter`` declarations, validated inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from chipctl.tui.widgets.toggle import Toggle
from drivers.errors import LimitError
from procedures.base import Parameter, parse_duration

DURATION_UNITS = (("w", 604800.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0))
"""Units of duration texts, largest first (what :func:`procedures.base.parse_duration` reads)."""

NPY_MAGIC = b"\x93NUMPY"
"""The first bytes of every .npy file."""


def is_time(parameter: Parameter) -> bool:
    """A duration, or a number in s: its field takes ``25s``, ``90min``, ``1h``, ``1d``, ``2w``."""
    return parameter.kind == "duration" or (parameter.kind is float and parameter.units == "s")


def duration_text(seconds: float) -> str:
    """``86400`` → ``1d``, ``5400`` → ``90min``, ``25`` → ``25s``, ``0.5`` → ``0.5s``: the
    largest unit that gives a whole number, never rounded."""
    for unit, size in DURATION_UNITS:
        count = seconds / size
        if seconds and count == int(count) and abs(count) < 1e9:
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def default_text(parameter: Parameter) -> str:
    """A parameter's default as the text of its input."""
    default = parameter.default
    if parameter.kind == "array" or default is None:
        return ""
    if parameter.kind == "cores" and isinstance(default, list):
        return ",".join(str(core) for core in default)
    if is_time(parameter) and isinstance(default, int | float):
        return duration_text(float(default))
    return str(default)


def limits_text(parameter: Parameter) -> str:
    """Units and limits of a parameter, e.g. ``s 0.001…3.2e+09``."""
    parts = []
    if parameter.units and parameter.units != "1":
        parts.append(parameter.units)
    if parameter.minimum is not None or parameter.maximum is not None:
        low = "−∞" if parameter.minimum is None else f"{parameter.minimum:g}"
        high = "∞" if parameter.maximum is None else f"{parameter.maximum:g}"
        parts.append(f"{low}…{high}")
    if parameter.kind == "array":
        parts.append(".npy")
    if is_time(parameter):  # the limits as durations: the unit is in each of them
        if parameter.minimum is None and parameter.maximum is None:
            return "duration"
        low = "0s" if parameter.minimum is None else duration_text(parameter.minimum)
        high = "∞" if parameter.maximum is None else duration_text(parameter.maximum)
        return f"{low}…{high}"
    return " ".join(parts)


def hint(parameter: Parameter) -> str:
    """What the parameter is: its description (and the syntax of core lists)."""
    parts = [parameter.description] if parameter.description else []
    if parameter.kind == "cores":
        parts.append("cores like 0-3,8")
    if is_time(parameter):
        parts.append("a duration like 25s, 90min, 1h, 1d, 2w or seconds")
    return "; ".join(parts)


def parse_text(parameter: Parameter, text: str) -> Any:
    """The typed value of an input's text (int/float parsed; other kinds left as text).

    Raises ``ValueError`` with a message for the operator.
    """
    text = text.strip()
    if parameter.kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if is_time(parameter):
        return parse_duration(text)
    if parameter.kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if parameter.kind == "duration":
        return parse_duration(text)
    return text


def check_text(parameter: Parameter, text: str) -> str:
    """The inline validation message for ``text`` (empty when it is valid)."""
    if parameter.kind == "array":
        if not text.strip():
            return "required: path of a .npy file" if parameter.default is None else ""
        path = Path(text.strip()).expanduser()
        if path.suffix != ".npy":
            return "expected a .npy file"
        if not path.is_file():
            return f"no such file: {path}"
        try:
            with open(path, "rb") as handle:
                magic = handle.read(len(NPY_MAGIC))
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror}"
        if magic != NPY_MAGIC:
            return (
                f"{path.name} is not a NumPy .npy file (no NumPy header); save it with numpy.save"
            )
        return ""
    try:
        parameter.validate(parse_text(parameter, text))
    except ValueError as exc:
        return str(exc)
    except LimitError as exc:
        return str(exc).removeprefix(f"parameter {parameter.name}: ")
    return ""


class ParameterForm(VerticalScroll, can_focus=False):
    """One row per parameter: label with units, an input (Toggle/Select/Input), the message.

    ``values()`` returns the raw values (text, bool or choice; arrays as paths) of the rows
    that differ from the default; ``errors()`` the rows whose input is invalid.
    """

    DEFAULT_CSS = """
    ParameterForm { height: 1fr; }
    ParameterForm .row { height: 1; margin-top: 1; }
    ParameterForm .name { width: 22; text-style: bold; }
    ParameterForm .field { width: 1fr; }
    ParameterForm .limits { width: auto; min-width: 8; color: $text-muted; padding-left: 1; }
    ParameterForm .hint { color: $text-muted; padding-left: 22; height: auto; }
    ParameterForm .error { color: $error; padding-left: 22; height: auto; }
    ParameterForm .error.ok { display: none; }
    """

    class Validity(Message):
        """The form became valid or invalid."""

        def __init__(self, valid: bool) -> None:
            super().__init__()
            self.valid = valid

    def __init__(
        self,
        parameters: tuple[Parameter, ...],
        texts: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parameters = parameters
        self.texts = dict(texts or {})
        """Initial texts of some inputs (instead of their defaults)."""
        self.problems: dict[str, str] = {}
        """Problems found beyond one field's text (a file's shape against the cores), by field."""

    def compose(self) -> ComposeResult:
        for parameter in self.parameters:
            with Horizontal(classes="row"):
                yield Label(parameter.name, classes="name")
                yield self._field(parameter, self.texts.get(parameter.name))
                yield Label(limits_text(parameter), classes="limits", markup=False)
            if hint(parameter):
                yield Static(hint(parameter), classes="hint", markup=False)
            yield Static("", classes="error ok", id=f"error-{parameter.name}", markup=False)

    @staticmethod
    def _field(parameter: Parameter, text: str | None = None) -> Input | Select[Any] | Toggle:
        field_id = f"param-{parameter.name}"
        if parameter.kind is bool:
            return Toggle(bool(parameter.default), id=field_id, classes="field")
        if parameter.choices is not None:
            options = [(str(choice), choice) for choice in parameter.choices]
            return Select(
                options,
                value=parameter.default,
                allow_blank=False,
                compact=True,
                id=field_id,
                classes="field",
            )
        placeholder = "path/to/file.npy" if parameter.kind == "array" else ""
        return Input(
            default_text(parameter) if text is None else text,
            placeholder=placeholder,
            compact=True,
            id=field_id,
            classes="field",
        )

    def on_mount(self) -> None:
        for parameter in self.parameters:
            self._check(parameter)
        self.post_message(self.Validity(not self.errors()))

    def _parameter(self, widget_id: str | None) -> Parameter | None:
        name = (widget_id or "").removeprefix("param-")
        return next((p for p in self.parameters if p.name == name), None)

    def _check(self, parameter: Parameter) -> str:
        widget = self.query_one(f"#param-{parameter.name}")
        message = check_text(parameter, widget.value) if isinstance(widget, Input) else ""
        message = message or self.problems.get(parameter.name, "")
        error = self.query_one(f"#error-{parameter.name}", Static)
        error.update(message)
        error.set_class(not message, "ok")
        return message

    def on_input_changed(self, event: Input.Changed) -> None:
        parameter = self._parameter(event.input.id)
        if parameter is not None:
            self._check(parameter)
            self.post_message(self.Validity(not self.errors()))

    def set_problems(self, problems: dict[str, str]) -> None:
        """Show ``problems`` (field → message) under their fields, replacing the previous ones."""
        changed = set(problems) | set(self.problems)
        self.problems = dict(problems)
        for parameter in self.parameters:
            if parameter.name in changed:
                self._check(parameter)

    def inline_errors(self) -> dict[str, str]:
        """Parameter name → message for every input whose text alone is invalid."""
        out = {}
        for parameter in self.parameters:
            widget = self.query_one(f"#param-{parameter.name}")
            if isinstance(widget, Input):
                message = check_text(parameter, widget.value)
                if message:
                    out[parameter.name] = message
        return out

    def errors(self) -> dict[str, str]:
        """Parameter name → validation message, for every invalid input (its text, or a
        problem found with the other fields)."""
        return {**self.problems, **self.inline_errors()}

    def values(self) -> dict[str, Any]:
        """Raw values of the inputs that are set (arrays as ``Path``, the rest as entered)."""
        out: dict[str, Any] = {}
        for parameter in self.parameters:
            widget = self.query_one(f"#param-{parameter.name}")
            if isinstance(widget, Toggle | Select):
                out[parameter.name] = widget.value
            elif isinstance(widget, Input):
                text = widget.value.strip()
                if parameter.kind == "array":
                    if text:
                        out[parameter.name] = Path(text).expanduser()
                elif text != default_text(parameter) or parameter.default is None:
                    out[parameter.name] = parse_text(parameter, text)
        return out

    def has_cores(self) -> bool:
        """Whether the form has a ``cores`` field."""
        return any(p.name == "cores" and p.kind == "cores" for p in self.parameters)

    def cores_text(self) -> str:
        """The text of the ``cores`` field ("" without one)."""
        found = self.query("#param-cores") if self.has_cores() else None
        widget = found.first() if found else None
        return widget.value if isinstance(widget, Input) else ""

    def set_value(self, name: str, value: Any) -> None:
        """Set one input (used by tests and presets)."""
        widget = self.query_one(f"#param-{name}")
        if isinstance(widget, Input):
            widget.value = str(value)
        elif isinstance(widget, Toggle | Select):
            widget.value = value
