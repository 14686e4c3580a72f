"""attention distillation studio: page config and navigation only. Run with `make run`."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="attention distillation studio", page_icon="🔭", layout="wide")

VIEWS = Path(__file__).parent / "views"
pages = [
    st.Page(VIEWS / "new_session.py", title="New session", icon="🚀", default=True),
    st.Page(VIEWS / "explorer.py", title="Attention explorer", icon="🔍", url_path="explorer"),
    st.Page(VIEWS / "divergence.py", title="Divergence over epochs", icon="📉", url_path="divergence"),
    st.Page(VIEWS / "accuracy.py", title="Accuracy and efficiency", icon="⚖️", url_path="accuracy"),
    st.Page(VIEWS / "compression.py", title="Compression", icon="🗜️", url_path="compression"),
    st.Page(VIEWS / "attributions.py", title="Attributions", icon="🧭", url_path="attributions"),
    st.Page(VIEWS / "generated.py", title="Generated data", icon="🧪", url_path="generated"),
    st.Page(VIEWS / "runs.py", title="Runs", icon="🗂️", url_path="runs"),
    st.Page(VIEWS / "compare.py", title="Compare runs", icon="🆚", url_path="compare"),
    st.Page(VIEWS / "sweep.py", title="Sweep across seeds", icon="🎲", url_path="sweep"),
]
page = st.navigation(pages)

from app.state import PRESENT  # noqa: E402

if PRESENT not in st.session_state and "present" in st.query_params:      # a link made in presentation mode
    st.session_state[PRESENT] = st.query_params["present"] in ("1", "true")
with st.sidebar:
    st.toggle("Presentation mode", key=PRESENT,
              help="For a projector or a lecture: larger text and charts, fewer controls, and a short note of what "
                   "to notice on each view. Links made in this mode open in it.")
if st.session_state.get(PRESENT):
    st.html("<style>html { font-size: 21px; } .stMainBlockContainer { padding-top: 2.5rem; } "
            "[data-testid='stCaptionContainer'] { font-size: 0.95rem; }</style>")
page.run()
