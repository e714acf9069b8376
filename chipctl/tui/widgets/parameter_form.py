"""A form generated from a procedure's ``Parameter`` declarations, validated inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from drivers.errors import LimitError
from procedures.base import Parameter, parse_duration


def default_text(parameter: Parameter) -> str:
    """A parameter's default as the text of its input."""
    default = parameter.default
    if parameter.kind == "array" or default is None:
        return ""
    if parameter.kind == "cores" and isinstance(default, list):
        return ",".join(str(core) for core in default)
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
    return " ".join(parts)


def hint(parameter: Parameter) -> str:
    """What the parameter is: its description (and the syntax of core lists)."""
    parts = [parameter.description] if parameter.description else []
    if parameter.kind == "cores":
        parts.append("cores like 0-3,8")
    if parameter.kind == "duration":
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
        return "" if path.is_file() else f"no such file: {path}"
    try:
        parameter.validate(parse_text(parameter, text))
    except ValueError as exc:
        return str(exc)
    except LimitError as exc:
        return str(exc).removeprefix(f"parameter {parameter.name}: ")
    return ""


class ParameterForm(VerticalScroll, can_focus=False):
    """One row per parameter: label with units, an input (Switch/Select/Input), the message.

    ``values()`` returns the raw values (text, bool or choice; arrays as paths) of the rows
    that differ from the default; ``errors()`` the rows whose input is invalid.
    """

    DEFAULT_CSS = """
    ParameterForm { height: 1fr; }
    ParameterForm .row { height: 1; margin-top: 1; }
    ParameterForm .name { width: 22; text-style: bold; }
    ParameterForm .field { width: 1fr; }
    ParameterForm Switch { height: 1; border: none; padding: 0; width: 10; }
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

    def __init__(self, parameters: tuple[Parameter, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parameters = parameters

    def compose(self) -> ComposeResult:
        for parameter in self.parameters:
            with Horizontal(classes="row"):
                yield Label(parameter.name, classes="name")
                yield self._field(parameter)
                yield Label(limits_text(parameter), classes="limits", markup=False)
            if hint(parameter):
                yield Static(hint(parameter), classes="hint", markup=False)
            yield Static("", classes="error ok", id=f"error-{parameter.name}", markup=False)

    @staticmethod
    def _field(parameter: Parameter) -> Input | Select[Any] | Switch:
        field_id = f"param-{parameter.name}"
        if parameter.kind is bool:
            return Switch(bool(parameter.default), id=field_id, classes="field")
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
            default_text(parameter),
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
        error = self.query_one(f"#error-{parameter.name}", Static)
        error.update(message)
        error.set_class(not message, "ok")
        return message

    def on_input_changed(self, event: Input.Changed) -> None:
        parameter = self._parameter(event.input.id)
        if parameter is not None:
            self._check(parameter)
            self.post_message(self.Validity(not self.errors()))

    def errors(self) -> dict[str, str]:
        """Parameter name → validation message, for every invalid input."""
        out = {}
        for parameter in self.parameters:
            widget = self.query_one(f"#param-{parameter.name}")
            if isinstance(widget, Input):
                message = check_text(parameter, widget.value)
                if message:
                    out[parameter.name] = message
        return out

    def values(self) -> dict[str, Any]:
        """Raw values of the inputs that are set (arrays as ``Path``, the rest as entered)."""
        out: dict[str, Any] = {}
        for parameter in self.parameters:
            widget = self.query_one(f"#param-{parameter.name}")
            if isinstance(widget, Switch | Select):
                out[parameter.name] = widget.value
            elif isinstance(widget, Input):
                text = widget.value.strip()
                if parameter.kind == "array":
                    if text:
                        out[parameter.name] = Path(text).expanduser()
                elif text != default_text(parameter) or parameter.default is None:
                    out[parameter.name] = parse_text(parameter, text)
        return out

    def set_value(self, name: str, value: Any) -> None:
        """Set one input (used by tests and presets)."""
        widget = self.query_one(f"#param-{name}")
        if isinstance(widget, Input):
            widget.value = str(value)
        elif isinstance(widget, Switch | Select):
            widget.value = value
