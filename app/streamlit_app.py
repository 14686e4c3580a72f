"""attention distillation studio: page config and navigation only. Run with `make run`."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import os  # noqa: E402

import streamlit as st  # noqa: E402

from app import roles  # noqa: E402
from app.state import PRESENT  # noqa: E402
from distill_core.machine import ORIGIN_ENV  # noqa: E402

os.environ.setdefault(ORIGIN_ENV, "the app")     # named to a session that waits for one of the app's

if PRESENT not in st.session_state and "present" in st.query_params:      # a link made in presentation mode
    st.session_state[PRESENT] = st.query_params["present"] in ("1", "true")
presenting = bool(st.session_state.get(PRESENT))
roles.read_link_token()             # an instructor's link: read once, then out of the address bar
# Presenting, the pages are named in a bar along the top and the sidebar (which holds only the toggle) starts
# folded away, so that the first screen is the view itself. Material icons draw on machines without an emoji font.
st.set_page_config(page_title="attention distillation studio", page_icon=":material/visibility:", layout="wide",
                   initial_sidebar_state="collapsed" if presenting else "auto")

VIEWS = Path(__file__).parent / "views"
pages = [
    st.Page(VIEWS / "new_session.py", title="New session", icon=":material/rocket_launch:", default=True),
    st.Page(VIEWS / "explorer.py", title="Attention explorer", icon=":material/grid_on:", url_path="explorer"),
    st.Page(VIEWS / "divergence.py", title="Divergence over epochs", icon=":material/trending_down:",
            url_path="divergence"),
    st.Page(VIEWS / "accuracy.py", title="Accuracy and efficiency", icon=":material/balance:", url_path="accuracy"),
    st.Page(VIEWS / "compression.py", title="Compression", icon=":material/compress:", url_path="compression"),
    st.Page(VIEWS / "attributions.py", title="Attributions", icon=":material/explore:", url_path="attributions"),
    st.Page(VIEWS / "generated.py", title="Generated data", icon=":material/science:", url_path="generated"),
    st.Page(VIEWS / "runs.py", title="Runs", icon=":material/folder_open:", url_path="runs"),
    st.Page(VIEWS / "compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(VIEWS / "sweep.py", title="Sweep across seeds", icon=":material/casino:", url_path="sweep"),
]
page = st.navigation(pages, position="top" if presenting else "sidebar")

with st.sidebar:
    st.toggle("Presentation mode", key=PRESENT,
              help="For a projector or a lecture: larger text and charts, fewer controls, and a short note of what "
                   "to notice on each view. Links made in this mode open in it. The pages move to a bar along "
                   "the top; open this sidebar again (the arrow at the top left) to leave the mode.")
    roles.sidebar()
if presenting:
    st.html("<style>html { font-size: 21px; } .stMainBlockContainer { padding-top: 3.2rem; } "
            ".stMainBlockContainer h1 { font-size: 2rem; padding-top: 0; } "
            "[data-testid='stCaptionContainer'] { font-size: 0.95rem; }</style>")
page.run()
