"""The New session page's panel for one run: finding the run to follow, its progress, live curves and results.

Watching must not slow the session down: the training thread runs in the app's process, and on a 2-core machine
every redraw (the script run on the server, the drawing in the browser) is taken from the training steps. So the
progress line (one small file read) is redrawn every PROGRESS_EVERY_S seconds and the curves every
CURVES_EVERY_S seconds; the curves still move within an epoch, from the thinned per-step training losses the
session writes (train_steps.jsonl). Streamlit's garbage collection after every script run is off
(.streamlit/config.toml): it stalled training for a large part of a second at each redraw.
`benchmarks/live_view_bench.py` measures training speed with this page open against the page closed: 0.93.
"""
from __future__ import annotations

import time

import streamlit as st

import distill_core
from app import common
from app.figures import curves as fig_curves
from distill_core import Run, RunStore
from distill_core.errors import DistillError
from distill_core.machine import WAITING_PHASE
from distill_core.session.callbacks import TEACHER_PHASES
from distill_core.verdicts import health_lines, paired_sentence

ACTIVE_STATUSES = ("queued", "running")
PROGRESS_EVERY_S = 5.0
CURVES_EVERY_S = 20.0
PHASES = {"starting": "Starting", WAITING_PHASE: "Waiting for the machine",
          "load data": "Loading the data",
          "prepare teacher": "Preparing the teacher (fine-tuned once, then cached)",
          "teacher outputs": "Computing the teacher's outputs",
          "epoch 0": "Measuring the students before training (epoch 0)",
          "train": "Training", "evaluate": "Testing", "done": "Finishing"}


def fmt_seconds(s) -> str:
    if s is None:
        return "-"
    s = int(round(float(s)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def fmt_acc(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


# ---- finding the run to follow -------------------------------------------------------------------------------
def active_runs(store: RunStore) -> list[Run]:
    """Runs that are queued or running, newest first (reads only status files)."""
    if not store.root.is_dir():
        return []
    out = []
    for p in sorted(store.root.iterdir(), reverse=True):
        if p.is_dir() and not p.name.startswith((".", "_")):
            try:
                if Run(p).status().get("status") in ACTIVE_STATUSES:
                    out.append(Run(p))
            except DistillError:
                continue
    return out


def find_active_run(store: RunStore, preferred: str | None) -> Run | None:
    """The run this tab started (or named in the URL), else any queued or running run: a reload or second tab
    reattaches."""
    if preferred:
        try:
            return store.open(preferred)
        except DistillError:
            pass
    active = active_runs(store)
    return active[0] if active else None


def last_run(store: RunStore) -> Run | None:
    """The newest run that has stopped, for a fresh tab after a session ended."""
    try:
        infos = store.list()
    except DistillError:
        return None
    for info in infos:
        if info.status not in (*ACTIVE_STATUSES, "damaged"):
            return store.open(info.run_id)
    return None


def queue_text(run_id: str) -> str:
    """Where a queued run stands, in words."""
    q = distill_core.session_queue()
    pos, running = q.position(run_id), q.running()
    where = f"queued, position {pos}" if pos else "queued"
    ahead = f" Running now: {', '.join(running)}." if running else ""
    return (f":material/schedule: **{run_id}** is {where}. Sessions started here run one at a time; it starts "
            f"when the sessions before it have finished.{ahead}")


# ---- progress ------------------------------------------------------------------------------------------------
UNITS = {"prepare teacher": "fine-tuning steps", "train teacher": "training steps", "teacher outputs": "batches",
         "epoch 0": "models measured", "evaluate": "models tested"}      # what a phase counts; others: steps
BEFORE_TRAINING = ("starting", "load data", "prepare teacher", "train teacher", "teacher outputs", "generate data",
                   "epoch 0")


def _countdown(left_s: float, where: str) -> str:
    """An estimate aged to now: "about 1 min 35 s left in the session", or, once it has run out, that it is late."""
    if left_s >= 1:
        return f"about {fmt_seconds(left_s)} left {where}"
    return "taking longer than estimated"


def _time_left(p: dict, phase: str, done: int, total: int, since: float) -> str:
    """What is left, from the estimates progress.json held when written, less the `since` seconds passed since."""
    session_eta, phase_eta = p.get("session_eta_s"), p.get("eta_s")
    finishing = phase != "train" and total > 0 and done >= total     # its counted work is done; it is wrapping up
    if finishing:
        return "finishing this phase"
    if session_eta is not None:
        return _countdown(session_eta - since, "in the session")
    if phase_eta is None:
        return "estimating the time left"
    left = _countdown(phase_eta - since, "in this phase")
    if phase == "prepare teacher" and phase_eta - since >= 1:    # its steps are counted for every epoch it may take
        left += " if every epoch runs (the fine-tune stops early once its validation accuracy stops improving)"
    return left + ("; the session's time is known once training starts" if phase in BEFORE_TRAINING else "")


def _train_headline(p: dict, name: str, done: int, epoch: int, epochs) -> str:
    """Where in the epochs training is: the step in the epoch, or the epoch being measured once its steps are done."""
    step, steps = p.get("epoch_step"), p.get("epoch_steps")
    of = f" of {epochs or '?'}"
    if step is not None and steps and step >= steps and done and done % steps == 0:
        trained = done // steps
        if epoch < trained:
            return f"{name}: epoch {trained}{of} · its steps done; measuring its validation accuracy and attention"
        return f"{name}: epoch {trained}{of} done"
    current = min(epoch + 1, epochs) if epochs else epoch + 1
    where = f" · step {step:,} of {steps:,} ({step / steps:.0%} of the epoch)" if step is not None and steps else ""
    return f"{name}: epoch {current}{of}{where}"


def progress_lines(p: dict, now: float | None = None) -> tuple[str, float, str]:
    """(headline, fraction for the bar, detail) of a progress.json record, in words, as of `now` (default: the clock).

    The record is written every half second while steps go by, but not within a long step (the teacher's outputs
    being saved, a model being tested): the times are computed at `now` from the record's `started` and
    `phase_started`, and its estimates are aged by the time since it was written (`updated`), so each redraw moves,
    and an estimate that runs out says so instead of staying at 0 s. During training the headline says where in the
    current epoch the session is, and the detail gives the time left in the whole session once the training speed
    is known; before that, the time left in the phase."""
    now = time.time() if now is None else now
    phase = p.get("phase", "starting")
    done, total = int(p.get("done") or 0), int(p.get("total") or 0)
    epoch, epochs = int(p.get("epoch") or 0), p.get("epochs") or 0
    fraction = min(1.0, done / total) if total else 0.0
    since = max(0.0, now - p["updated"]) if p.get("updated") else 0.0
    if p.get("started"):
        elapsed_s = max(0.0, now - p["started"])
    else:
        elapsed_s = None if p.get("elapsed_s") is None else p["elapsed_s"] + since
    left = _time_left(p, phase, done, total, since)
    name = PHASES.get(phase, phase.capitalize())
    if phase == WAITING_PHASE:          # another session holds the machine: whose, in words (machine.py)
        waited = fmt_seconds(max(0.0, now - p["phase_started"])) if p.get("phase_started") else "a moment"
        who = p.get("waiting") or "another session is running on this machine"
        return name, 0.0, (f"{who[0].upper()}{who[1:]}. This session starts on its own when that one ends (two at "
                           f"once would each run many times slower) · waited {waited} so far · cancel to stop waiting")
    if phase == "train":
        headline = _train_headline(p, name, done, epoch, epochs)
        return headline, fraction, f"{done:,}/{total:,} training steps · {fmt_seconds(elapsed_s)} elapsed · {left}"
    headline = name + (f" · {epoch} of {epochs} epochs done" if epoch and epochs else "")
    counts = f"{done:,}/{total:,} {UNITS.get(phase, 'steps')} · " if total > 1 else ""
    if p.get("phase_started"):
        times = f"{fmt_seconds(max(0.0, now - p['phase_started']))} in this phase, {fmt_seconds(elapsed_s)} in all"
    else:
        times = f"{fmt_seconds(elapsed_s)} elapsed"
    return headline, fraction, f"{counts}{times} · {left}"


# ---- curves --------------------------------------------------------------------------------------------------
def teacher_curve(run: Run, key: str) -> bool:
    """While the teacher trains (the first session on a machine): its validation curve so far, and where the
    explorer already shows its attention. False when there is nothing to draw."""
    p = run.progress() or {}
    points = p.get("teacher_curve") or []
    if p.get("phase") not in TEACHER_PHASES or not points:
        return False
    last = points[-1]
    done, total = last.get("step"), p.get("total")
    planned = last["epoch"] * total / done if done and total and last.get("epoch") else None   # the x axis to the end
    st.plotly_chart(common.sized(fig_curves.teacher_fit(points, planned)), width="stretch",
                    config=common.PLOTLY_CONFIG, key=f"{key}.teacher_fit")
    score = (f"validation {100 * last['val_accuracy']:.1f}%" if last.get("val_accuracy") is not None else
             f"validation perplexity {last['val_perplexity']:.1f}" if last.get("val_perplexity") is not None else "")
    preview = (" The **Explorer** already shows the teacher's attention on the probe examples, as it was before "
               "the fine-tune." if (run.path / "probe_preview.json").exists() else "")
    st.caption(f"The teacher is trained once for this data and cached: later sessions skip this. Epoch "
               f"{last.get('epoch', 0):.2g} so far{', ' + score if score else ''}.{preview} The students' curves "
               f"follow once it is ready.")
    return True


def curves(run: Run, key: str) -> None:
    """Validation accuracy and attention divergence per epoch, the training loss by component within epochs, and
    the loss weights and temperature when they change: one line per variant."""
    records = common.metrics(run.id)
    if not records:
        if not teacher_curve(run, key):
            st.caption("Curves appear after the first evaluation (epoch 0 = before training).")
        return
    try:
        epochs = run.config().get("train", {}).get("epochs")
        summary = run.summary() or {}
    except DistillError:
        epochs, summary = None, {}
    epochs = summary.get("epochs") or epochs
    variants = common.variants_of(run)
    c1, c2 = st.columns(2)
    names, ref = variants.names, variants.reference
    try:
        measure = ((run.probe() or {}).get("metric") or {}).get("name", "accuracy")
    except DistillError:
        measure = "accuracy"
    val = fig_curves.variant_lines(records, lambda r: r.get("val_accuracy"), f"Validation {measure}", measure, names,
                                   ref, epochs, y_range=(0.0, 1.02))
    js = fig_curves.variant_lines(records, lambda r: r.get("js_mean"), "Attention divergence (mean JS)",
                                  "JS to the teacher", names, ref, epochs)
    loss = fig_curves.loss_components(records, common.train_steps(run.id), names, ref, epochs=epochs)
    c1.plotly_chart(common.sized(val), width="stretch", config=common.PLOTLY_CONFIG, key=f"{key}.val")
    c2.plotly_chart(common.sized(js), width="stretch", config=common.PLOTLY_CONFIG, key=f"{key}.js")
    st.plotly_chart(common.sized(loss), width="stretch", config=common.PLOTLY_CONFIG, key=f"{key}.loss")
    common.weights_chart(run, f"{key}.weights", epochs, variants)


# ---- results -------------------------------------------------------------------------------------------------
def delta_text(accuracy: dict, name: str, reference: str | None) -> str | None:
    """A variant's test accuracy against the reference's, for st.metric; None for the teacher and the reference."""
    a, r = accuracy.get(name), accuracy.get(reference) if reference else None
    if name in ("teacher", reference) or a is None or r is None:
        return None
    gain = 100 * (a - r)
    return f"{gain:+.1f} points vs {reference}" if abs(gain) >= 0.05 else f"same as {reference}"


def accuracy_metrics(run: Run) -> None:
    """The run's warnings, then the test accuracy of the teacher and every variant, each variant against the
    reference (four a row). With the run's paired comparisons (summary.json "paired"), a difference that is no
    clear difference is grey and each variant's help gives the paired test in words."""
    summary = run.summary() or {}
    acc, paired = summary.get("accuracy") or {}, summary.get("paired") or {}
    variants = common.variants_of(run)
    models = ["teacher", *variants.names]
    if all(acc.get(m) is None for m in models):
        return
    if health := health_lines(summary.get("warnings") or []):
        st.warning("\n".join(f"- {line}" for line in health), icon=":material/warning:")
    st.markdown("**Test accuracy**")           # the models' names alone under it, so that four fit a row uncut
    for start in range(0, len(models), 4):
        for col, name in zip(st.columns(4), models[start:start + 4]):
            delta = delta_text(acc, name, variants.reference)
            same = bool(delta) and delta.startswith("same")
            c = paired.get(name) if delta else None
            unclear = c is not None and c.get("verdict") not in ("better", "worse")
            col.metric(variants.label(name), fmt_acc(acc.get(name)), delta=delta,
                       delta_color="off" if same or unclear else "normal", delta_arrow="off" if same else "auto",
                       help=paired_sentence(c, name, variants.reference) if c else None)
    if paired:
        n = next(iter(paired.values())).get("n") or 0
        st.caption(f"A grey difference is no clear difference on these {n:,} test examples (McNemar p ≥ 0.05): hover "
                   "a variant's ⓘ for the paired test; the **Accuracy** page has the intervals.")
