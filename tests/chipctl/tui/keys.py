"""Driving the TUI as an operator does: only key presses (no values set from the test)."""

from __future__ import annotations

import contextlib

from textual.pilot import OutOfBounds, Pilot
from textual.widgets import Input

from chipctl.tui.app import ChipctlApp
from chipctl.tui.screens.procedures import ProceduresView
from chipctl.tui.widgets.toggle import Toggle


async def choose_procedure(app: ChipctlApp, pilot: Pilot[None], name: str) -> ProceduresView:
    """F5, Esc (to the procedure list), then up/down until ``name`` is highlighted."""
    await pilot.press("f5")
    await pilot.pause()
    await pilot.press("escape")
    view = app.query_one(ProceduresView)
    names = list(view.classes_by_name)
    for _ in range(len(names)):
        step = names.index(name) - names.index(view.selected)
        if step == 0:
            break
        await pilot.press("down" if step > 0 else "up")
        await pilot.pause()
    assert view.selected == name
    return view


async def focus_field(app: ChipctlApp, pilot: Pilot[None], name: str) -> None:
    """Click the field of parameter ``name`` of the shown form, or Tab until it has the focus
    (when it is scrolled out of view)."""
    form = app.query_one(ProceduresView).form()
    field = form.query_one(f"#param-{name}")
    form.scroll_to_widget(field, animate=False)
    await pilot.pause()
    with contextlib.suppress(OutOfBounds):
        await pilot.click(field)
    for _ in range(80):
        if app.focused is not None and app.focused.id == f"param-{name}":
            return
        await pilot.press("tab")
    raise AssertionError(f"Tab never reached the field {name!r}")


async def type_into(app: ChipctlApp, pilot: Pilot[None], name: str, text: str) -> None:
    """Focus the field ``name``, erase it (End, Ctrl+U) and type ``text`` key by key."""
    await focus_field(app, pilot, name)
    assert isinstance(app.focused, Input)
    await pilot.press("end", "ctrl+u", *text)
    await pilot.pause()


async def switch_to(app: ChipctlApp, pilot: Pilot[None], name: str, on: bool) -> None:
    """Focus the switch ``name`` and press Space if it is not already ``on``."""
    await focus_field(app, pilot, name)
    assert isinstance(app.focused, Toggle)
    if app.focused.value != on:
        await pilot.press("space")
    await pilot.pause()
    assert app.focused.value == on and str(app.focused.render()) == ("[on]" if on else "[off]")
