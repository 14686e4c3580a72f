"""Named sessions the form can start from: the defaults (ADS_FORM_DEFAULTS or SessionConfig()) or an example
config of the repository, chosen by name at the top of the page. Choosing one sets every field of the form to its
values, and its settings the form does not show (e.g. train.min_steps) become the form's defaults."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core import SessionConfig
from distill_core.errors import ConfigError

from . import tasks
from .keys import SAVED

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
DEFAULT = "default"
# name -> (label on the picker, example file)
PRESETS = {
    DEFAULT: ("The default session", None),
    "classroom": ("Classroom: about 40 s on a 2-core laptop once the teacher is cached", "classroom.yaml"),
}
PRESET = "new.preset"                 # the picker
CHOSEN = "new._preset_chosen"         # what was chosen last (kept while the user visits other pages)
PROBLEM = "new._preset_problem"


def preset_config(name: str, defaults: SessionConfig) -> SessionConfig:
    """The config a preset starts the form from (raises ConfigError for a damaged example file)."""
    file = PRESETS[name][1]
    return defaults if file is None else SessionConfig.load(EXAMPLES / file)


def _apply(defaults: SessionConfig) -> None:
    """The picker's callback: every field of the form to the chosen preset's values."""
    name = st.session_state.get(PRESET) or DEFAULT
    try:
        cfg = preset_config(name, defaults)
    except ConfigError as e:
        st.session_state[PROBLEM] = f"Preset {PRESETS[name][0]!r} could not be read: {e}"
        st.session_state[PRESET] = st.session_state.get(CHOSEN, DEFAULT)
        return
    st.session_state[CHOSEN] = name
    st.session_state.pop(SAVED, None)
    for key, value in tasks.initial_values(cfg).items():
        st.session_state[key] = value


def form_defaults(defaults: SessionConfig) -> SessionConfig:
    """The preset picker ("Preset"); returns what the form builds on: the chosen preset's config, else `defaults`."""
    if PRESET not in st.session_state:
        st.session_state[PRESET] = st.session_state.get(CHOSEN, DEFAULT)
    st.selectbox("Preset", list(PRESETS), format_func=lambda n: PRESETS[n][0], key=PRESET,
                 on_change=_apply, args=(defaults,),
                 help="A preset sets every field below; change any of them afterwards. Classroom is the default "
                      "session trained 3 epochs (examples/classroom.yaml): distillation still helps on it (README "
                      "› Performance).")
    if problem := st.session_state.pop(PROBLEM, None):
        st.warning(problem)
    try:
        return preset_config(st.session_state.get(CHOSEN, DEFAULT), defaults)
    except ConfigError:
        return defaults
