"""The Runs page's export control: a trained student of one run taken away as a Hugging Face model folder, downloaded
as a .zip or pushed to the Hub. distill_core/export.py does the work and words the refusals; this file only draws."""
from __future__ import annotations

import streamlit as st

from app import common, roles
from distill_core import export
from distill_core.errors import DistillError

KEY = "runs.export."


def draw(run_id: str, may_push: bool) -> None:
    """The export control of run `run_id`: which variant and which of its weights, the .zip download (made when the
    button is pressed), the line that loads it and, with `may_push`, a push to a Hub repository. A run that cannot
    export gets a caption saying why instead."""
    store = common.get_store()
    st.markdown("**Take a student away**")
    try:
        run = store.open(run_id)
        problem = export.export_problem(run)
    except DistillError as e:
        problem = str(e)
    if problem:
        st.caption(f"No student to take away: {problem}.")
        return
    kept = export.exportable_variants(run)
    variant, weights = _choice(kept)
    name = export.folder_name(run_id, variant, weights)
    st.download_button("Download student (.zip)", data=lambda: export.export_zip(store.open(run_id), variant, weights),
                       file_name=f"{name}.zip", mime="application/zip", key=KEY + "download",
                       icon=":material/download:")
    st.caption(f"A Hugging Face model folder (safetensors weights, config, tokenizer, a model card with the run's "
               f"scores and the settings that trained it). Unzipped, it loads with "
               f"`{export.load_line(run, name)}`.")
    if may_push:
        _push(run_id, variant, weights)


def _choice(kept: dict[str, dict[str, int]]) -> tuple[str, str]:
    """The variant and weights chosen; best is offered where it is not the last epoch."""
    names = list(kept)
    if st.session_state.get(KEY + "variant") not in names:
        st.session_state[KEY + "variant"] = "distilled" if "distilled" in names else names[-1]
    c1, c2 = st.columns(2)
    variant = c1.selectbox("Student variant", names, key=KEY + "variant")
    epochs = kept[variant]
    options = ["final"] + (["best"] if epochs.get("best") not in (None, epochs["final"]) else [])
    if st.session_state.get(KEY + "weights") not in options:
        st.session_state[KEY + "weights"] = "final"
    weights = c2.radio("Weights", options, key=KEY + "weights", horizontal=True,
                       format_func=lambda w: f"{w} (epoch {epochs[w]})",
                       help="final: the last finished epoch; best: the epoch of the best validation score")
    return variant, weights


def _push(run_id: str, variant: str, weights: str) -> None:
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    repo = c1.text_input("Hub repository", key=KEY + "repo", placeholder="your-name/tiny-student",
                         help="a model repository on the Hugging Face Hub, created private when it does not exist; "
                              "the push needs the network and a token (hf auth login, or HF_TOKEN)")
    if c2.button("Push to the Hub", key=KEY + "push", disabled=not repo.strip(), icon=":material/upload:") \
            and not roles.refused("push a student to the Hub"):
        try:
            with st.spinner(f"Pushing {variant} to {repo.strip()}…"):
                url = export.export_and_push(common.get_store().open(run_id), repo.strip(), variant, weights)
        except DistillError as e:
            st.error(str(e))
        else:
            st.success(f"Pushed to {url}")
