"""Where a user is in a view: kept while they visit other pages, restored from the URL, written back to it.

Streamlit forgets a widget's value when its page is not drawn, so going Explorer -> Divergence -> Explorer would
start the explorer over, and a reload would start the whole app over. Each page therefore declares its view's
fields (widget key, URL parameter, type) in a `View`:

    view = View("explorer", [Field("explorer.head", "head", int), ...])
    view.restore()          # top of the page, before its widgets
    ...widgets...
    view.sync()             # after the widgets: remember them and write them into the URL

`restore` gives each widget key its value from, in this order: the widget itself (the page is being redrawn),
the URL when it changed since this tab last wrote it (a reload, a shared link, a link from another page), and
the value saved when the page was last drawn. A URL this tab wrote itself, on another page, is not read: its
parameters belong to that page. `sync` saves the values and writes them, with the open
run, into the URL, so the address bar always names the exact view and a copied link opens it again.

The open run is one for all pages: `common.SELECTED_RUN`, URL parameter `run`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import streamlit as st

SELECTED_RUN = "common.selected_run"    # the run the analysis pages show (also re-exported by app.common)
STARTED_HERE = "new.active_run"         # the run this browser tab started (New session), offered when it finishes
TYPED_TEXT = "common.typed_text"        # the sentence last typed on any page, offered on the others
LAST_URL = "state.last_url"             # the query parameters this tab wrote last
RUN_PARAM = "run"
PRESENT = "common.present"              # presentation mode (large fonts, fewer controls), URL parameter present=1


def _to_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _from_bool(value: bool) -> str:
    return "1" if value else "0"


@dataclass(frozen=True)
class Field:
    key: str                        # the widget's session-state key, e.g. "explorer.head"
    param: str                      # its URL query parameter, e.g. "head"
    kind: Callable = str            # int, float, bool, str, tuple (a range "a-b") or a parser of the text

    def parse(self, text: str) -> Any:
        """The value of a URL parameter; ValueError when it is not one (the field then keeps its default)."""
        if self.kind is bool:
            return _to_bool(text)
        if self.kind is tuple:                                  # a range, "3-27"
            a, b = (int(x) for x in text.split("-"))
            return (a, b)
        return self.kind(text)

    def format(self, value: Any) -> str:
        if self.kind is bool:
            return _from_bool(value)
        if self.kind is tuple:
            return f"{value[0]}-{value[1]}"
        return str(value)


def class_or_model(text: str) -> int | str:
    """A class index, or a name such as "teacher" (the class the teacher predicts)."""
    return int(text) if text.lstrip("-").isdigit() else text


# ---- the views' fields: one home, read by the pages and by links from one page to another ------------------
def _text_fields(page: str) -> list[Field]:
    return [Field(f"{page}.source", "source"), Field(f"{page}.text", "text"), Field(f"{page}.example", "example", int)]


ATTACK_SIZES = (0.0, 0.02, 0.05, 0.1, 0.2)   # the explorer's perturbation sizes (relative; 0 = off)


def attack_size(text: str) -> float:
    """One of ATTACK_SIZES; ValueError for anything else."""
    x = float(text)
    if x not in ATTACK_SIZES:
        raise ValueError(text)
    return x


EXPLORER = [*_text_fields("explorer"), Field("explorer.student", "variant"), Field("explorer.epoch", "epoch", int),
            Field("explorer.weights", "weights"), Field("explorer.student_layer", "layer", int),
            Field("explorer.teacher_layer", "tlayer", int), Field("explorer.head", "head", int),
            Field("explorer.teacher_side", "side"), Field("explorer.teacher_head", "thead", int),
            Field("explorer.sqrt_scale", "sqrt", bool), Field("explorer.window", "tokens", tuple),
            Field("explorer.attack_eps", "attack", attack_size), Field("explorer.kind", "kind")]
DIVERGENCE = [Field("divergence.metric", "metric"), Field("divergence.per_head", "per_head", bool),
              Field("divergence.epoch", "epoch", int), Field("divergence.kind", "kind")]
COMPARE = [Field(f"compare.{side}_{name}", f"{side}_{name}", kind) for side in "ab"
           for name, kind in (("run", str), ("variant", str), ("epoch", int))] + [
    Field("compare.example", "example", int), Field("compare.layer", "layer", int), Field("compare.head", "head", int),
    Field("compare.b_layer", "b_layer", int), Field("compare.b_head", "b_head", int),
    Field("compare.metric", "metric"), Field("compare.sqrt_scale", "sqrt", bool)]
ATTRIBUTIONS = [*_text_fields("attributions"), Field("attributions.target", "explain", class_or_model),
                Field("attributions.steps", "steps", int), Field("attributions.student", "variant")]


def _query() -> dict[str, str]:
    return {k: st.query_params[k] for k in st.query_params}


class View:
    """The fields of one page's view (see the module docstring)."""

    def __init__(self, page: str, fields: Sequence[Field], run_marker: str | None = None):
        self.page, self.fields = page, list(fields)
        self.saved_key = f"state.{page}"
        self.run_marker = run_marker        # a page's "state belongs to this run" key, set with restored values

    @property
    def saved(self) -> dict:
        return st.session_state.setdefault(self.saved_key, {})

    def restore(self) -> bool:
        """Give each field's widget its value (see the module docstring); True when a new address named the run."""
        query = _query()
        url_new = query != st.session_state.get(LAST_URL)
        linked_run = RUN_PARAM in query and (url_new or SELECTED_RUN not in st.session_state)
        if linked_run:
            st.session_state[SELECTED_RUN] = query[RUN_PARAM]
        restored_from_url = restored_from_saved = False
        for f in self.fields:
            if f.key in st.session_state:                   # the user's latest choice (or a value restored earlier)
                # Assigned again, so that a widget drawn this run shows it. A value that stayed in the session
                # while its widget was not drawn (the probe example while a sentence is typed) would otherwise
                # reach the page while the widget, drawn anew, showed its default: controls saying one thing
                # and the maps another.
                st.session_state[f.key] = st.session_state[f.key]
                continue
            value, found = None, False
            if url_new and f.param in query:
                try:
                    value, found = f.parse(query[f.param]), True
                    restored_from_url = True
                except ValueError:
                    found = False                           # a mistyped link: the widget keeps its default
            if not found and f.key in self.saved:
                value, found = self.saved[f.key], True
                restored_from_saved = True
            if found:
                st.session_state[f.key] = value
        if self.run_marker:                                 # the restored values belong to this run
            if restored_from_url and RUN_PARAM in query:
                st.session_state[self.run_marker] = query[RUN_PARAM]
            elif restored_from_saved and "run" in self.saved:
                st.session_state[self.run_marker] = self.saved["run"]
        return linked_run

    def forget(self, *keys: str) -> None:
        """Drop fields' values, live and saved, so that they start from their defaults."""
        for k in keys:
            st.session_state.pop(k, None)
            self.saved.pop(k, None)

    def values(self) -> dict[str, Any]:
        return {f.key: st.session_state[f.key] for f in self.fields if st.session_state.get(f.key) is not None}

    def params(self) -> dict[str, str]:
        """The URL parameters of the view as it is now: the open run first, then the fields."""
        out = {}
        if st.session_state.get(SELECTED_RUN):
            out[RUN_PARAM] = str(st.session_state[SELECTED_RUN])
        if st.session_state.get(PRESENT):
            out["present"] = "1"
        by_key = {f.key: f for f in self.fields}
        out.update({by_key[k].param: by_key[k].format(v) for k, v in self.values().items()})
        return out

    def sync(self) -> None:
        """Remember the fields' values for the next visit and write them into the URL."""
        self.saved.update(self.values())
        if st.session_state.get(SELECTED_RUN):
            self.saved["run"] = st.session_state[SELECTED_RUN]
        params = self.params()
        if _query() != params:
            st.query_params.from_dict(params)
        st.session_state[LAST_URL] = params

    def link(self) -> str:
        """An address that opens exactly this view (absolute when the browser told us where the app is)."""
        query = urlencode(self.params())
        base = ""
        try:
            base = (st.context.url or "").split("?", 1)[0]
        except Exception:  # noqa: BLE001 - no browser context (scripts, tests): a relative link
            base = ""
        return f"{base}?{query}" if query else base


def open_view(page: str, fields: Sequence[Field], values: dict[str, Any], run_id: str | None = None) -> None:
    """Prepare another page's view before switching to it (e.g. a grid cell that opens the explorer there)."""
    saved = st.session_state.setdefault(f"state.{page}", {})
    for f in fields:
        if f.key in values:
            saved[f.key] = values[f.key]
            st.session_state.pop(f.key, None)
    if run_id:
        st.session_state[SELECTED_RUN] = run_id
        saved["run"] = run_id


def link_button(view: View) -> None:
    """A "link to this view" popover: the address, with a copy button, that opens exactly what is shown."""
    with st.popover("Link to this view", icon=":material/link:", width="stretch",
                    help="An address that opens this page exactly as it is now: the run, the example or sentence "
                         "and every choice below."):
        st.code(view.link(), language=None, wrap_lines=True)
        st.caption("Copy it with the button at the right of the box. The address bar holds the same link.")
