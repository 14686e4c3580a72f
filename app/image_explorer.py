"""The attention explorer for image runs: where the teacher and a student look on a picture, epoch by epoch.

Drawn by app/views/explorer.py when the open run's probe.json says "modality": "image". CNN maps are a stage's
activation attention; ViT maps are the [CLS] token's attention over the patches (one head, the mean over heads, or
the attention rollout). The figures are in app/figures/images.py, the arrays come from distill_core/modality/vision/maps.py.

The choices are kept in the URL like the text explorer's (their own fields below, on the same page); an uploaded
picture is not: it lives in the browser tab only.
"""
from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from app import common, roles, state
from app.figures import base as fig_base, images as fig_images, maps as fig_maps
from distill_core import RunStore
from distill_core.errors import DistillError
from distill_core.modality.vision import maps as image_maps
from distill_core.modality.vision.maps import MEAN_HEADS
from distill_core.vocab import TEACHER

K = "explorer.image."
PROBE, UPLOAD = "probe", "upload"
FIELDS = [state.Field(K + "source", "picture"), state.Field(K + "example", "example", int),
          state.Field(K + "student", "variant"), state.Field(K + "epoch", "epoch", int),
          state.Field(K + "weights", "weights"), state.Field(K + "student_layer", "layer", int),
          state.Field(K + "teacher_layer", "tlayer", int), state.Field(K + "head", "head", int),
          state.Field(K + "teacher_head", "thead", int), state.Field(K + "rollout", "rollout", bool),
          state.Field(K + "invert", "invert", bool)]
_LOCK = threading.Lock()                     # the ViTs' capture hooks go on shared model objects


# ---- live models ----------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the run's models…", max_entries=4)
def _models(root: str, run_id: str, version: float, variant: str, weights: str):
    return image_maps.load_run_models(RunStore(root).open(run_id), variant, weights)


@st.cache_data(show_spinner="Running both models on the picture…", max_entries=32)
def _live(root: str, run_id: str, version: float, variant: str, weights: str, pixels: np.ndarray,
          image_size: tuple[int, int]) -> dict:
    teacher, student = _models(root, run_id, version, variant, weights)
    with _LOCK:
        return {TEACHER: image_maps.maps_on_image(teacher, pixels, image_size),
                variant: image_maps.maps_on_image(student, pixels, image_size)}


def live_maps(run_id: str, variant: str, weights: str, pixels: np.ndarray, image_size) -> dict:
    """{"teacher": (maps, probs), variant: (maps, probs)} of both models on one picture, uint8 (H, W, C)."""
    return _live(str(common.runs_dir()), run_id, common.run_version(run_id), variant, weights, pixels,
                 tuple(int(x) for x in image_size))


# ---- small helpers ---------------------------------------------------------------------------------------
def _pixels(values) -> np.ndarray:
    """probe["images"][k] (H, W) or (H, W, 3) nested ints -> uint8 (H, W, C)."""
    a = np.asarray(values, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _layer_name(describe: dict, k: int) -> str:
    if describe["family"] == "cnn":
        h, w = describe["sizes"][k]
        return f"stage {k} ({h}×{w})"
    return f"layer {k}"


def _unit(describe: dict) -> str:
    return "stage" if describe["family"] == "cnn" else "layer"


def _head_text(describe: dict, head: int, rollout: bool) -> str:
    if describe["family"] == "cnn":
        return "activation"
    if rollout:
        return "rollout"
    return "mean of heads" if head == MEAN_HEADS else f"head {head}"


def _thumbnail(pixels: np.ndarray, px: int = 84) -> np.ndarray:
    """A small picture enlarged with square pixels (a browser would blur an 8×8 image)."""
    g = fig_images.grey(pixels).astype(np.uint8)
    k = max(1, px // max(g.shape))
    return np.kron(g, np.ones((k, k), dtype=np.uint8))


# ---- the page --------------------------------------------------------------------------------------------
INTRO = ("Where each model looks on the picture, drawn over it in grey: a CNN's activation attention (the channel "
         "mean of its squared activations, Zagoruyko & Komodakis) at each stage, a ViT's [CLS] token's attention over "
         "the patches at each layer. Every map sums to 1 over the pixels; hover a pixel for its share.")


def draw(run, probe: dict, link_slot, intro, maps_slot=None) -> None:
    """The whole image explorer for one run (the caller has picked the run and read its probe.json); `intro` is a
    placeholder for the page's caption, `link_slot` a container for the "link to this view" button, `maps_slot` (when
    presenting) the container above the controls that the maps and what to notice go into."""
    view = state.View("explorer", FIELDS, run_marker=K + "_run")
    view.restore()
    present = common.presenting()
    font = common.chart_font()
    if not present:
        intro.caption(INTRO)
    variants = common.variants_of(run, probe)
    students = [v for v in variants.names if run.attention_epochs(v)]
    if not students:
        st.info(f"Run {run.id} has not recorded any attention yet; it appears here after its first epoch.")
        return
    if st.session_state.get(K + "_run") != run.id:          # another run: start from its defaults
        view.forget(*(f.key for f in FIELDS))
        st.session_state[K + "_run"] = run.id

    left, right = st.columns([3, 2], gap="large")
    with left:
        source, example, upload = _pick_picture(probe)
    with right:
        student, epoch, weights = _pick_student(run, students, variants, source)
    sides = _pick_maps(probe)
    view.sync()
    with link_slot:
        state.link_button(view)

    size = tuple(int(x) for x in probe["image_size"])
    found = _picture_maps(run, probe, source, example, upload, student, epoch, weights, variants)
    if found is None:
        return
    pixels, t_maps, s_maps, before, when, probs = found

    t_side, s_side = sides
    t_map, s_map = _spatial(t_maps, t_side, size), _spatial(s_maps, s_side, size)
    _picture_line(probe, probs, example, size)
    s_name = variants.label(student)
    titles = (f"teacher\n{t_side['title']}", f"{s_name}\n{s_side['title']} · {when}", "student − teacher\n ")
    if present:
        titles = ("teacher", s_name, "")
    fig = fig_images.overlay_triptych(pixels, t_map, s_map, titles=titles, font_size=font, difference=not present,
                                      patches=(t_side["describe"].get("patch"), s_side["describe"].get("patch")))
    (maps_slot or st).plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "overlay")
    s_before = None if before is None else _spatial(before, s_side, size)
    if not present:
        st.caption(f"Clear: pixels holding at most an even share of a map (1/{size[0] * size[1]}); the more of the "
                   "map a pixel holds, the more opaque its colour. Difference: red where the student looks more than "
                   "the teacher, blue where less.")
    with maps_slot or st.container():
        common.notice(fig_images.overlay_reading(t_map, s_map, s_name, before=s_before))
    if present:
        return
    _every_head(pixels, (t_maps, s_maps), sides, s_name, font)
    _patch_maps((t_maps, s_maps), sides, s_name, font)


def _spatial(maps, side: dict, size) -> np.ndarray:
    """image_maps.spatial_map of one side's chosen layer, head and rollout."""
    return image_maps.spatial_map(maps, side["layer"], side["head"], side["describe"], size, rollout=side["rollout"])


def _picture_line(probe: dict, probs, example, size) -> None:
    """What the models predict on an uploaded picture, or a probe image's label."""
    names = probe["label_names"]
    if probs is not None:
        st.markdown(f"Predicted: {fig_images.predictions_text(probs, names)}")
    else:
        st.caption(f"Label: **{names[probe['labels'][example]]}** · {probe['texts'][example]} · "
                   f"{size[0]}×{size[1]} pixels")


def _picture_maps(run, probe: dict, source: str, example, upload, student: str, epoch: int, weights: str, variants):
    """(pixels, teacher maps, student maps, the student's maps before training or None, when they are from, class
    probabilities or None) of the chosen picture: the recorded maps of a probe image, or both models run live on an
    uploaded one. None (the page says why) when there is nothing to draw."""
    size = tuple(int(x) for x in probe["image_size"])
    before = None
    try:
        if source == PROBE:
            pixels = _pixels(probe["images"][example])
            t_maps = common.attention(run.id, "teacher")[example]
            s_maps = common.attention(run.id, f"{student}_e{epoch}")[example]
            if epoch != 0 and 0 in run.attention_epochs(student):
                before = common.attention(run.id, f"{student}_e0")[example]
            return pixels, t_maps, s_maps, before, f"epoch {epoch}", None
        if upload is None:
            st.info("Choose a picture above: both models run on it here, on the CPU.")
            return None
        try:
            pixels = image_maps.read_image(upload.getvalue(), size, int(probe.get("channels", 1)))
        except DistillError as e:
            st.error(f"**{upload.name}**: {e}")
            return None
        if st.session_state.get(K + "invert"):
            pixels = 255 - pixels
        found = live_maps(run.id, student, weights, pixels, size)
        (t_maps, t_probs), (s_maps, s_probs) = found[TEACHER], found[student]
        kept = run.kept_weights(student)
        when = f"{weights} weights (epoch {kept.get(weights, '?')})"
        return pixels, t_maps, s_maps, before, when, {"teacher": t_probs, variants.label(student): s_probs}
    except (DistillError, ValueError) as e:
        common.show_error(e)
        return None


def _pick_picture(probe: dict):
    """(source, probe index or None, the uploaded file or None)."""
    sources = [PROBE, UPLOAD] if roles.may_change() else [PROBE]        # viewers upload nothing
    common.keep_choice(K + "source", sources, PROBE)
    source = st.radio("Picture", sources, horizontal=True, key=K + "source",
                      format_func={PROBE: "a probe image", UPLOAD: "upload an image"}.get)
    if source == UPLOAD and not roles.refused("upload pictures"):
        upload = st.file_uploader(
            f"Upload an image (PNG or JPEG, up to {image_maps.MAX_UPLOAD_MB} MB)",
            type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], key=K + "upload",
            help="Converted to the run's channels and resized to its image size, as the models read images; both "
                 "models run on it on the CPU.")
        dark = np.mean([fig_images.grey(_pixels(x)).mean() for x in probe["images"]]) < 128
        st.checkbox("Invert the picture (light ↔ dark)", key=K + "invert",
                    help="The probe images are " + ("light strokes on a dark background (like MNIST): invert a dark "
                                                    "drawing on white paper to match them." if dark else
                                                    "mostly light: invert a picture on a dark background."))
        return source, None, upload
    texts, labels, names = probe["texts"], probe["labels"], probe["label_names"]
    n = len(probe["images"])
    common.keep_choice(K + "example", range(n), 0)
    example = st.selectbox("Probe image", range(n), key=K + "example",
                           format_func=lambda i: f"#{i} · {texts[i]}")
    shown = list(range(min(n, 16)))
    st.image([_thumbnail(_pixels(probe["images"][i]), 56) for i in shown],
             caption=[("▶ " if i == example else "") + f"#{i}: {names[labels[i]]}" for i in shown], width=56)
    return PROBE, example, None


def _pick_student(run, students: list[str], variants, source: str):
    """(variant, epoch, weights): the epoch of the recorded maps (probe images) or the weights run live (uploads)."""
    common.keep_choice(K + "student", students, next((v for v in students if v != variants.reference), students[0]))
    student = st.radio("Student variant", students, horizontal=True, key=K + "student", format_func=variants.label,
                       help="Every variant is the same student trained with its own objectives, from the same "
                            "initial weights on the same batches.")
    epochs = run.attention_epochs(student)
    common.keep_choice(K + "epoch", epochs, epochs[-1])
    epoch, weights = st.session_state[K + "epoch"], "final"
    if source == PROBE:
        if len(epochs) > 1:
            epoch = st.select_slider("Epoch (0 = before training)", options=epochs, key=K + "epoch",
                                     help="Maps recorded on the probe images after each epoch.")
        else:
            st.caption(f"Only epoch {epoch} has been recorded so far (0 = before training).")
        return student, epoch, weights
    weights = common.pick_weights(run, student, K + "weights", "picture")[0]
    return student, epoch, weights


def _pick_maps(probe: dict) -> tuple[dict, dict]:
    """The layer (or stage), head and rollout of each side: {"layer", "head", "rollout", "describe", "title"}."""
    d_t, d_s = probe["maps"]["teacher"], probe["maps"]["student"]
    Lt, Ls = probe["teacher_layers"], probe["student_layers"]
    mapped = {s: t for t, s in probe.get("pairs") or []}               # student layer -> teacher layer
    vit_t, vit_s = d_t["family"] == "vit", d_s["family"] == "vit"

    def follow() -> None:
        s = st.session_state.get(K + "student_layer")
        if s in mapped:
            st.session_state[K + "teacher_layer"] = mapped[s]

    def follow_head() -> None:
        h = st.session_state.get(K + "head", MEAN_HEADS)
        if vit_t and (h == MEAN_HEADS or (probe.get("head_rule") == "direct" and h < probe["teacher_heads"])):
            st.session_state[K + "teacher_head"] = h

    cols = st.columns([1.3, 1.3, 1, 1, 1] if (vit_t or vit_s) else 2)
    default_s = max(mapped) if mapped else Ls - 1
    common.keep_choice(K + "student_layer", range(Ls), default_s)
    s_layer = cols[0].selectbox(
        f"Student {_unit(d_s)}", range(Ls), key=K + "student_layer", on_change=follow,
        format_func=lambda s: _layer_name(d_s, s) + (f" → teacher {mapped[s]}" if s in mapped else ""),
        help="The student's maps to show." + (" A mapped pair brings its teacher side along." if mapped else
                                               " Teacher and student are of different families: no pairs were "
                                               "compared in training, pick each side freely."))
    common.keep_choice(K + "teacher_layer", range(Lt), mapped.get(s_layer, Lt - 1))
    t_layer = cols[1].selectbox(
        f"Teacher {_unit(d_t)}", range(Lt), key=K + "teacher_layer",
        format_func=lambda t: _layer_name(d_t, t) + (" (mapped pair)" if mapped.get(s_layer) == t else ""))
    rollout = False
    if vit_t or vit_s:
        rollout = cols[4].toggle("Rollout", key=K + "rollout",
                                 help="Attention rollout (Abnar & Zuidema 2020): each layer's heads averaged, "
                                      "0.5·A + 0.5·I for the residual connection, multiplied through the layers up "
                                      "to the chosen one: where the [CLS] token's information comes from, not only "
                                      "this layer's attention. CNN maps are unchanged.")
    heads = {}
    for side, col, vit, count in (("head", cols[2 % len(cols)], vit_s, probe["student_heads"]),
                                  ("teacher_head", cols[3 % len(cols)], vit_t, probe["teacher_heads"])):
        if not vit:
            heads[side] = MEAN_HEADS
            continue
        options = [MEAN_HEADS, *range(count)]
        common.keep_choice(K + side, options, MEAN_HEADS)
        heads[side] = col.selectbox(("Student" if side == "head" else "Teacher") + " head", options, key=K + side,
                                    format_func=lambda h: "mean of heads" if h == MEAN_HEADS else f"head {h}",
                                    disabled=rollout, on_change=follow_head if side == "head" else None,
                                    help="Rollout averages the heads." if rollout else None)

    def side(describe, layer, head):
        roll = rollout and describe["family"] == "vit"
        return {"layer": layer, "head": head, "rollout": roll, "describe": describe,
                "title": f"{_layer_name(describe, layer)} · {_head_text(describe, head, roll)}"}
    return side(d_t, t_layer, heads["teacher_head"]), side(d_s, s_layer, heads["head"])


def _every_head(pixels: np.ndarray, maps: tuple, sides: tuple[dict, dict], s_name: str, font: int) -> None:
    """ViT sides: every head's [CLS] map of the chosen layer; CNN sides: every stage."""
    size = fig_images.grey(pixels).shape
    rows, patches, highlight = [], [], []
    for who, m, side in zip(("teacher", s_name), maps, sides):
        d = side["describe"]
        if d["family"] == "vit":
            layer = m[side["layer"]]                                               # (H, T, T)
            grid = image_maps.cls_map(layer[:, 0], d["grid"])                       # (H, gh, gw)
            panels = np.stack([image_maps.patches_to_pixels(g, size) for g in grid])
            rows.append((f"{who} · layer {side['layer']}", panels, [f"head {h}" for h in range(len(panels))]))
            highlight.append(None if side["head"] == MEAN_HEADS or side["rollout"] else side["head"])
        else:
            panels = np.stack([image_maps.spatial_map(m, k, 0, d, size) for k in range(len(m))])
            rows.append((f"{who} · stages", panels, [_layer_name(d, k) for k in range(len(panels))]))
            highlight.append(side["layer"])
        patches.append(d.get("patch"))
    kinds = {s["describe"]["family"] for s in sides}
    st.subheader({frozenset({"vit"}): "Every head of the chosen layers", frozenset({"cnn"}): "Every stage"}.get(
        frozenset(kinds), "Every head and every stage"))
    st.plotly_chart(fig_images.heads_grid(pixels, rows, patches=patches, font_size=font, highlight=highlight),
                    width="stretch", config=common.PLOTLY_CONFIG, key=K + "heads")
    st.caption("One colour scale for every panel. Outlined: the map shown above. "
               + ("ViT panels are the [CLS] token's attention of one head, without rollout." if "vit" in kinds else ""))


def _patch_maps(maps: tuple, sides: tuple[dict, dict], s_name: str, font: int) -> None:
    """The chosen ViT maps patch to patch, every token labelled (the text explorer's maps)."""
    shown = []
    for who, m, side in zip(("teacher", s_name), maps, sides):
        d = side["describe"]
        if d["family"] == "vit":
            full = image_maps.layer_row(m, side["layer"], side["head"], side["rollout"])     # (T, T)
            shown.append((f"{who} · {side['title']}", full, d["tokens"]))
    if not shown:
        return
    st.subheader("Patch to patch")
    st.caption("Row = the query token, column = the key token it attends to; each row sums to 1. The [CLS] row (the "
               "first) is what the maps above draw over the picture. Patches are named by row and column: r0c1 is "
               "the second patch of the top row.")
    same = len(shown) == 2 and shown[0][2] == shown[1][2]
    tokens = shown[0][2]
    if same:
        arrangement, fit = fig_maps.triptych_arrangement(len(tokens), fig_base.WIDE_PX, font)
        window = _token_window(len(tokens), fit)
        w_tokens, (t_win, s_win) = fig_maps.map_window(tokens, window[0], window[1], shown[0][1], shown[1][1])
        fig = fig_maps.heatmap_triptych(t_win, s_win, w_tokens,
                                        titles=(shown[0][0], shown[1][0], "student − teacher"),
                                        font_size=font, arrangement=arrangement)
        st.plotly_chart(fig, width="stretch", config=common.PLOTLY_CONFIG, key=K + "patch_maps")
        return
    holders = st.columns(2) if len(shown) == 2 else st.columns([3, 2])[:1]      # one side: not the whole width
    for k, ((title, full, toks), holder) in enumerate(zip(shown, holders)):
        with holder:
            fit = fig_maps.tokens_that_fit(fig_base.WIDE_PX // 2, 1, font)
            window = _token_window(len(toks), fit, suffix=str(k))
            w_tokens, (win,) = fig_maps.map_window(toks, window[0], window[1], full)
            st.plotly_chart(fig_maps.map_panels([win], w_tokens, (title,), font_size=font), width="stretch",
                            config=common.PLOTLY_CONFIG, key=K + f"patch_map{k}")


def _token_window(n: int, fit: int, suffix: str = "") -> tuple[int, int]:
    """All n tokens when they fit with every label readable, else a range slider over them."""
    if n <= fit:
        return 0, n
    key = K + "window" + suffix
    stored = st.session_state.get(key)
    if not (isinstance(stored, (tuple, list)) and len(stored) == 2 and 0 <= stored[0] < stored[1] <= n):
        st.session_state[key] = (0, fit)
    window = st.slider("Tokens shown", 0, n, key=key,
                       help=f"{n} tokens; about {fit} fit side by side with every token labelled. Drag the range to "
                            "move along the patches or widen it.")
    st.caption(f"Tokens {window[0]}–{window[1] - 1} of {n}, on both axes: weights on tokens outside the window are "
               "not drawn, so a row can sum to less than 1.")
    return window
