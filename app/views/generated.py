"""Generated data: the transfer texts and augmented copies some variants learned from, with the teacher's labels."""
from __future__ import annotations

import difflib
import html

import numpy as np
import streamlit as st

from app import common, state, tasks
from app.figures import image_attribution as iac
from distill_core.errors import DistillError

K = "generated."
GENERATED_FILE = "generated.json"
KINDS = {"all": "all", "transfer": "transfer texts", "augmented": "augmented copies"}
SHOWN = 100                                   # rows of the table
HIDDEN_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}
MARKDOWN_CHARS = {c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~$"}
view = state.View("generated", [state.Field(K + "kind", "kind")])
view.restore()


def escape(text: str) -> str:
    """Text safe inside the page's HTML and markdown: tags and markdown characters become entities."""
    return "".join(MARKDOWN_CHARS.get(c) or html.escape(c) for c in text)


def words(tokens: list[str], marked: set[int]) -> list[tuple[str, bool]]:
    """WordPiece tokens joined into words ("##" pieces onto the word before), special tokens left out; a word is
    marked when one of its tokens is."""
    out: list[tuple[str, bool]] = []
    for p, tok in enumerate(tokens):
        if tok in HIDDEN_TOKENS:
            continue
        if tok.startswith("##") and out:
            word, was = out[-1]
            out[-1] = (word + tok[2:], was or p in marked)
        else:
            out.append((tok, p in marked))
    return out


def marked_html(tokens: list[str], marked: set[int], tag: str) -> str:
    """The words of tokens, escaped, the marked ones inside <tag>."""
    return " ".join(f"<{tag}>{escape(w)}</{tag}>" if m else escape(w) for w, m in words(tokens, marked))


def removed(original: list[str], tokens: list[str]) -> set[int]:
    """Positions of the original the copy does not have where it had them (deleted, or moved by a swap)."""
    ops = difflib.SequenceMatcher(None, original, tokens, autojunk=False).get_opcodes()
    return {p for op, a0, a1, _, _ in ops if op == "delete" for p in range(a0, a1)}


def table_html(examples: list[dict], label_names: list[str]) -> str:
    head = "<tr><th>kind</th><th>generated example</th><th>original</th><th>teacher</th></tr>"
    rows = []
    for e in examples:
        tokens, original = e["tokens"], e.get("original")
        text = marked_html(tokens, set(e.get("changed", [])), "mark")
        orig = marked_html(original, removed(original, tokens), "s") if original else "–"
        k = e["teacher_label"]
        label = label_names[k] if 0 <= k < len(label_names) else str(k)
        rows.append(f"<tr><td>{escape(e['kind'])}</td><td>{text}</td><td>{orig}</td>"
                    f"<td>{escape(label)} ({e['confidence']:.0%})</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def image_page(record: dict, config: dict) -> None:
    """An image run's generated data: counts, who trained on it, and the kept examples beside their originals."""
    st.caption("Besides the training split, some variants learned from extra images: **unused images** (images no "
               "split took) and **augmented copies** of the training images (rotated, shifted and with noise added). "
               "The students never see a label of these images: their targets are the teacher's soft outputs on them.")
    counts = record.get("counts", {})
    c1, c2, c3 = st.columns(3)
    c1.metric("Unused images", f"{counts.get('transfer', 0):,}", help=f"from {record.get('source', '?')}")
    c2.metric("Augmented copies", f"{counts.get('augmented', 0):,}",
              help=f"{(config.get('transfer') or {}).get('copies', '?')} per training image")
    c3.metric("Generated examples", f"{counts.get('total', 0):,}")
    users = record.get("used_by") or []
    st.markdown("Trained on them: " + (", ".join(f"**{escape(u)}**" for u in users) or "no variant of this run") + ".")
    for line in record.get("notices") or []:
        st.caption(f":material/info: {escape(line)}")
    examples = record.get("examples") or []
    names = {"all": "all", "transfer": "unused images", "augmented": "augmented copies"}
    present = [k for k in KINDS if k == "all" or any(e["kind"] == k for e in examples)]
    if st.session_state.get(K + "kind") not in present:
        st.session_state[K + "kind"] = "all"
    kind = st.radio("Show", present, horizontal=True, key=K + "kind", format_func=names.get)
    chosen = [e for e in examples if kind == "all" or e["kind"] == kind]
    if not chosen:
        st.caption("The run kept no example of its generated images.")
        return
    labels = record.get("label_names", [])
    pictures, titles = [], []
    for e in chosen:
        k = e["teacher_label"]
        said = f"{labels[k] if 0 <= k < len(labels) else k} ({e['confidence']:.0%})"
        if e.get("original") is not None:
            pictures.append(np.asarray(e["original"], dtype=np.uint8))
            titles.append("original")
        pictures.append(np.asarray(e["image"], dtype=np.uint8))
        titles.append(f"{'copy' if e.get('original') is not None else 'unused'} → {said}")
    st.plotly_chart(common.sized(iac.picture_grid(pictures, titles, cols=8)), width="stretch",
                    config=common.PLOTLY_CONFIG, key=K + "pictures")
    st.caption(f"Each augmented copy follows its original. Under each generated image: the teacher's label and "
               f"confidence, the student's target. Showing the {len(chosen)} examples the run kept.")


st.title("Generated data")
run = common.pick_run(K + "run", need_epochs=False)
if run is None:
    st.stop()
try:
    record = run.read_json(GENERATED_FILE)
    config = run.config()
    image_run = tasks.of(run.probe()).pictures
except DistillError as e:
    common.show_error(e)
    st.stop()
if not record and image_run:
    st.info(f"Run **{run.id}** trained on no generated data. To have some, turn on **generated data** for a variant "
            f"(`generated: true` in a config file) and give the session the images no split took "
            f"(`transfer.source: unused`) or augmented copies of the training images (`transfer.copies`).")
    view.sync()
    st.stop()
if record and (tasks.of(record).pictures or image_run):
    image_page(record, config)
    view.sync()
    st.stop()
if not record:
    st.info(f"Run **{run.id}** trained on no generated data. To have some, turn on **generated data** for a variant "
            f"(`generated: true` in a config file) and give the session a transfer source (`transfer.source`: "
            f"`unused` rows of the dataset, or a .csv, .jsonl or .txt file of texts) or augmented copies of the "
            f"training texts (`transfer.copies`).")
    view.sync()
    st.stop()

st.caption("Besides the training split, some variants learned from extra examples: **transfer texts** (texts without "
           "a label: rows of the dataset no split took, or a file of texts) and **augmented copies** of the "
           "training texts (a few words replaced by close words of the teacher's vocabulary, masked, deleted or "
           "swapped). The students never see a label of these examples, not even where the dataset has one: their "
           "targets are the teacher's soft outputs on them.")
counts = record.get("counts", {})
transfer = config.get("transfer") or {}
c1, c2, c3 = st.columns(3)
c1.metric("Transfer texts", f"{counts.get('transfer', 0):,}", help=f"from {record.get('source', '?')}")
c2.metric("Augmented copies", f"{counts.get('augmented', 0):,}",
          help=f"{transfer.get('copies', '?')} per training text, changing about "
               f"{float(transfer.get('fraction', 0)):.0%} of its words")
c3.metric("Generated examples", f"{counts.get('total', 0):,}")
users = [v.get("name", "?") for v in config.get("variants") or [] if isinstance(v, dict) and v.get("generated")]
labelled = record.get("labels_used_by") or []
st.markdown(f"Source of the transfer texts: **{escape(str(record.get('source', '?')))}**. Trained on them: "
            + (", ".join(f"**{escape(u)}**" for u in users) if users else "no variant of this run") + "."
            + (" With their true labels (the labels-only reference): " + ", ".join(f"**{escape(u)}**" for u in labelled)
               + "." if labelled else ""))
for line in record.get("notices") or []:
    st.caption(f":material/info: {escape(line)}")

examples = record.get("examples") or []
present = [k for k in KINDS if k == "all" or any(e["kind"] == k for e in examples)]
if st.session_state.get(K + "kind") not in present:
    st.session_state[K + "kind"] = "all"
kind = st.radio("Show", present, horizontal=True, key=K + "kind", format_func=KINDS.get)
chosen = [e for e in examples if kind == "all" or e["kind"] == kind]
st.caption("Changed words are highlighted; in the original, words the copy leaves out or moves are struck "
           f"through. Teacher: its label and confidence. Showing {min(len(chosen), SHOWN)} of the {len(chosen)} "
           f"examples the run kept.")
st.markdown(table_html(chosen[:SHOWN], record.get("label_names", [])), unsafe_allow_html=True)
view.sync()
