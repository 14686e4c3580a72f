"""The studio in a Jupyter notebook: run a session with a progress bar, open a run, and draw its figures inline with
the app's own figure builders (app/figures) and the pages' own preparation of them (app/page_data). No Streamlit
here, directly or through what this imports (tests/test_notebook.py checks it).

    from app import notebook as studio
    run = studio.run("examples/classroom.yaml", train__epochs=2)     # a Run: the cell shows its summary
    run.maps(layer=1, head=0, example=0)          # teacher | student | difference on a probe example
    run.maps_for("a wonderful, clever film", layer=1, head=0)        # the same for a typed sentence
    run.heads(layer=1)                            # every head of the teacher's and the student's layer
    run.divergence()                              # each variant's attention divergence from the teacher, by epoch
    run.accuracy(), run.difference()              # test accuracy with its intervals; each variant against the reference
    studio.runs(), studio.open_run(run_id)        # the run store as a table; a run made earlier (here or in the app)

Figures are plotly figures, returned and never shown here: the notebook draws a figure that ends a cell. The run
store is the app's (`ADS_RUNS_DIR`, else `runs/` in the repository), so a run made here opens in the app and back.
Attention maps are drawn for text classification runs; the summary, the accuracy and the divergence curves work for
every kind of run.
"""
from __future__ import annotations

import contextlib
import html
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from transformers.utils import logging as hf_logging

from app import page_data, tables, tasks
from app.figures import accuracy as fig_accuracy, divergence as fig_divergence, maps as fig_maps
from app.figures.image_attribution import no_divergence_reason
from distill_core import analysis
from distill_core.config import SessionConfig
from distill_core.errors import DistillError
from distill_core.machine import ORIGIN_ENV
from distill_core.preflight import preflight
from distill_core.reopen import RunModels, reopen
from distill_core.session import run_session
from distill_core.session.callbacks import TqdmProgress
from distill_core.store import Run as StoredRun, RunStore, dataset_label
from distill_core.verdicts import health_lines, verdict_lines
from distill_core.vocab import METRICS, TEACHER, model_label, of_kind

ALL_HEADS = page_data.AVERAGE     # head=ALL_HEADS: a layer's heads averaged
GAMMA = 0.5                       # the maps' square-root colour scale, the explorer's default
MAP_TASKS = ("text",)             # the kinds of run whose attention maps the notebook draws

__all__ = ["run", "open_run", "runs", "session_config", "Run", "Figures", "NotebookError", "ALL_HEADS"]


class NotebookError(DistillError, ValueError):
    """A choice the run cannot show (a layer, head, variant, example or epoch it does not have, or a kind of run
    whose maps the notebook does not draw); the message names what to choose instead."""


class Figures(tuple):
    """Several figures that a notebook cell shows one under the other; each is also an item (`figs[0]`)."""

    def _ipython_display_(self) -> None:
        from IPython.display import display
        for fig in self:
            display(fig)


# ---- sessions -------------------------------------------------------------------------------------------------------
def _store(runs_dir) -> RunStore:
    return RunStore(runs_dir if runs_dir is not None else page_data.runs_dir())


def _dotted(cfg: SessionConfig, settings: Mapping | None, keywords: Mapping) -> dict:
    """Settings as SessionConfig.with_overrides takes them (the command line's --set key=value): dotted keys as given,
    keyword names with "__" for "." (train__epochs), and a section given as a mapping ({"train": {"epochs": 2}})
    as one key per entry."""
    if settings is not None and not isinstance(settings, Mapping):
        raise NotebookError(f"settings must be a mapping like {{'train.epochs': 2}}, not {type(settings).__name__}")
    sections = {k for k, v in cfg.to_dict().items() if isinstance(v, dict)}
    out = {}
    for key, value in [*(settings or {}).items(), *((k.replace("__", "."), v) for k, v in keywords.items())]:
        if key in sections and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[str(key)] = value
    return out


def session_config(config=None, settings: Mapping | None = None, **keywords) -> SessionConfig:
    """The session `run` would start, checked: `config` (None: the defaults; a YAML or JSON file; a dict shaped like
    one; a SessionConfig) with `settings` and keyword settings applied (see run)."""
    if config is None:
        cfg = SessionConfig()
    elif isinstance(config, SessionConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = SessionConfig.from_dict(dict(config))
    elif isinstance(config, (str, os.PathLike)):
        cfg = SessionConfig.load(config)
    else:
        raise NotebookError(f"config must be a path to a YAML or JSON file, a dict or a SessionConfig, not "
                            f"{type(config).__name__}")
    overrides = _dotted(cfg, settings, keywords)
    return cfg.with_overrides(overrides) if overrides else cfg


@contextlib.contextmanager
def _quiet():
    """transformers' own progress bars and notices off while a session runs (as on the command line), then back."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def run(config=None, *, runs_dir=None, progress: bool = True, settings: Mapping | None = None, **keywords) -> "Run":
    """Run a session in this process to its end and return its Run.

    config: None (the default session), a YAML or JSON config file, a dict shaped like one, or a SessionConfig.
    settings: changes as the command line's `--set` takes them, {"train.epochs": 2,
    "variants.distilled.losses.attention_mse": 100}, or a section as a mapping, {"train": {"epochs": 2}}; keyword
    settings say the same with "__" for ".": run(train__epochs=2). runs_dir: the run store (default: the app's).
    progress: a progress bar per phase (tqdm.auto: a notebook widget where ipywidgets is installed, else text) and
    a line per epoch. The config is checked as the command line checks it before any work; a session that fails
    raises its error, recorded in the run as the app and the command line record it. Interrupting the kernel stops
    the session at once; the run keeps the epochs it finished."""
    cfg = session_config(config, settings, **keywords)
    store = _store(runs_dir)
    preflight(cfg, store)
    os.environ.setdefault(ORIGIN_ENV, "a notebook")      # named to a session of another process that waits for it
    with _quiet():
        run_id = run_session(cfg, store, [TqdmProgress()] if progress else [])
    return Run(store.open(run_id))


def open_run(run_id: str | None = None, runs_dir=None) -> "Run":
    """A run of the store by its id (`runs()` lists them); None: the newest finished run."""
    store = _store(runs_dir)
    if run_id is None:
        done = next((r for r in store.list() if r.status == "done"), None)
        if done is None:
            raise NotebookError(f"no finished run in {store.root}; run a session first (notebook.run()) or pass "
                                f"runs_dir")
        run_id = done.run_id
    return Run(store.open(run_id))


def runs(runs_dir=None) -> pd.DataFrame:
    """The run store, newest first: one row per run with its status, name, data, epochs and test scores (%)."""
    rows = [{"run": r.run_id, "status": r.status, "name": r.name, "started": r.started.replace("T", " ")[:16],
             "data": r.dataset, "epochs": r.epochs_done, "score": r.score,
             "test (%)": " · ".join(f"{m} {100 * a:.1f}" for m, a in r.accuracy.items() if a is not None),
             "problem": r.error or None}
            for r in _store(runs_dir).list()]
    return pd.DataFrame(rows, columns=["run", "status", "name", "started", "data", "epochs", "score", "test (%)",
                                       "problem"])


# ---- a run ----------------------------------------------------------------------------------------------------------
def _index(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _choose(what: str, value, count: int, has: str, extra: str = "") -> int:
    """`value` checked as one of `count` things (layers, heads, examples): NotebookError naming the range if not.
    has: what there is, in words ("the student has 2 layers")."""
    if not _index(value) or not 0 <= value < count:
        raise NotebookError(f"{what} {value!r} is out of range: {has}, choose one of 0 to {count - 1}{extra}")
    return int(value)


def _formatter(fmt: str):
    """A table cell's number as text in `fmt`; a dash where there is none."""
    return lambda x: "–" if pd.isna(x) else fmt.format(x)


def _bold(line: str) -> str:
    """A verdict line's markdown (**bold**) as HTML, everything else escaped."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line, quote=False))


# The summary table's numbers as the Accuracy page formats them.
_FORMATS = {tables.HALFWIDTH: "{:.1f}", tables.MCNEMAR_P: "{:.3f}", tables.RANDOMISATION_P: "{:.3f}",
            tables.OF_TEACHER: "{:.0f}"}


class Run:
    """One run of the store, read as the app's pages read it: its summary, its attention maps and its figures.

    Figures come from app/figures, built as the pages build them. Choices are checked against the run (a layer,
    head, example, variant or epoch it does not have raises NotebookError, saying what it has)."""

    def __init__(self, stored: StoredRun):
        self.stored = stored
        self._maps: dict[str, list] = {}
        self._models: dict[str, RunModels] = {}

    # ---- what the run is ----------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def path(self) -> Path:
        return self.stored.path

    @property
    def status(self) -> str:
        return self.stored.status().get("status", "unknown")

    @property
    def probe(self) -> dict:
        return self.stored.probe() or {}

    @property
    def variants(self) -> list[str]:
        """The student variants in session order."""
        return page_data.variants_of(self.stored, self.probe).names

    @property
    def reference(self) -> str | None:
        """The labels-only variant the others are compared with (None when the run has none)."""
        return page_data.variants_of(self.stored, self.probe).reference

    @property
    def task(self) -> tasks.TaskPages:
        return tasks.of(self.probe)

    @property
    def examples(self) -> pd.DataFrame:
        """The probe examples whose attention was recorded every epoch (the `example=` of maps and heads)."""
        p = self.probe
        texts, labels, tokens = p.get("texts") or [], p.get("labels") or [], p.get("tokens") or []
        names = p.get("label_names") or []
        return pd.DataFrame([{"text": t, "label": tasks.example_label(labels[i], names) if i < len(labels) else None,
                              "tokens": len(tokens[i]) if i < len(tokens) else None}
                             for i, t in enumerate(texts)], columns=["text", "label", "tokens"])

    def _scores(self) -> page_data.Scores | None:
        summary = self.stored.summary()
        return None if summary is None else page_data.scores_of(summary, self.variants, self.reference)

    @property
    def summary(self) -> pd.DataFrame:
        """The Accuracy page's table: each model's test score (%) with its 95% interval, its difference from the
        reference with the paired interval and test, and its share of the teacher's score. Empty before the run's
        test evaluation."""
        scores = self._scores()
        if scores is None or not scores.tested:
            return pd.DataFrame(columns=["model"])
        ref = self.reference
        rows = tables.accuracy_rows((TEACHER, *self.variants), scores.accuracy, scores.n, scores.verdicts,
                                    lambda m: model_label(m, ref), page_data.objectives_text(self.stored.config()),
                                    (self.stored.summary() or {}).get("params") or {}, ref,
                                    paired=bool(scores.paired), independent=True, metric=scores.short)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"<Run {self.id}: {self.status}, variants {', '.join(self.variants) or 'none yet'}>"

    def _repr_html_(self) -> str:
        s, config = self.stored.summary() or {}, self.stored.config()
        ref, objectives = self.reference, page_data.objectives_text(config)
        facts = [f"<b>Run {html.escape(self.id)}</b>", html.escape(self.status), self.task.label,
                 html.escape(dataset_label(str((config.get("data") or {}).get("source", ""))))]
        if s.get("epochs_done") is not None:
            facts.append(f"{s['epochs_done']} epochs")
        if s.get("wall_s"):
            facts.append(f"{s['wall_s']:.0f} s on {html.escape(str(s.get('device', '')))}")
        error = self.stored.status().get("error")
        out = [f"<p>{' · '.join(facts)}</p>"]
        if error:
            out.append(f"<p><b>Stopped:</b> {html.escape(str(error))}</p>")
        out.append("<p>" + "<br>".join(
            f"<b>{html.escape(model_label(v, ref))}</b>{' (the reference)' if v == ref else ''}: "
            f"{html.escape(objectives.get(v, ''))}" for v in self.variants) + "</p>")
        out += [f"<p>⚠ {_bold(line)}</p>" for line in health_lines(s.get("warnings") or [])]
        scores = self._scores()
        if scores is None or not scores.tested:
            out.append(f"<p>No test results: the run is {html.escape(self.status)}.</p>")
            return "".join(out)
        table = self.summary.drop(columns=["objectives"])
        formats = {c: _formatter(_FORMATS.get(c, "{:+.1f}" if c.startswith("vs ") else "{:.1f}"))
                   for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
        out.append(table.to_html(index=False, na_rep="–", formatters=formats, border=0))
        out.append(f"<p>Test set: {scores.n:,} examples; scores in %, differences in points.</p>")
        lines = verdict_lines(list(scores.verdicts.values()), ref)
        if lines:
            out.append("<ul>" + "".join(f"<li>{_bold(line)}</li>" for line in lines) + "</ul>")
        return "".join(out)

    # ---- choices --------------------------------------------------------------------------------------------
    def _require_maps(self) -> dict:
        probe = self.probe
        if self.task.kind not in MAP_TASKS:
            raise NotebookError(f"run {self.id} is a {self.task.label} run: the notebook draws the attention maps of "
                                f"text classification runs (its summary, accuracy and divergence curves work for "
                                f"every run); open this run in the app's Attention explorer (make run) for its maps")
        if not probe.get("tokens"):
            raise NotebookError(f"run {self.id} has not recorded any attention yet ({self.status}); its maps appear "
                                f"after its first epoch")
        return probe

    def _variant(self, variant: str | None) -> str:
        """The variant asked for, or the explorer's default: the first one that is not the reference."""
        names, ref = self.variants, self.reference
        recorded = [v for v in names if self.stored.attention_epochs(v)]
        if variant is None:
            if not recorded:
                raise NotebookError(f"run {self.id} has not recorded any student's attention yet")
            return next((v for v in recorded if v != ref), recorded[0])
        if variant not in names:
            raise NotebookError(f"run {self.id} has no variant {variant!r}; its variants are {', '.join(names)}")
        if variant not in recorded:
            raise NotebookError(f"variant {variant} of run {self.id} recorded no attention maps (it stopped before "
                                f"its first epoch)")
        return variant

    def _epoch(self, variant: str, epoch: int | None) -> int:
        epochs = self.stored.attention_epochs(variant)
        if epoch is None:
            return epochs[-1]
        if not _index(epoch) or epoch not in epochs:
            raise NotebookError(f"variant {variant} has no attention maps of epoch {epoch!r}; its recorded epochs are "
                                f"{', '.join(map(str, epochs))} (0 = before training), or None for the last")
        return int(epoch)

    def _layers(self, probe: dict, layer: int | None, teacher_layer: int | None) -> tuple[int, int]:
        """(student layer, teacher layer): the first mapped pair by default, a student layer's mapped teacher layer."""
        pairs = probe.get("pairs") or []
        mapped = {int(s): int(t) for t, s in pairs}
        layer = (int(pairs[0][1]) if pairs else 0) if layer is None else layer
        n_student, n_teacher = int(probe["student_layers"]), int(probe["teacher_layers"])
        layer = _choose("student layer", layer, n_student, f"the student has {n_student} layers")
        if teacher_layer is None:
            if layer not in mapped:
                raise NotebookError(f"student layer {layer} is not mapped to a teacher layer; choose a mapped student "
                                    f"layer ({', '.join(map(str, sorted(mapped))) or 'none'}) or name teacher_layer")
            teacher_layer = mapped[layer]
        return layer, _choose("teacher layer", teacher_layer, n_teacher, f"the teacher has {n_teacher} layers")

    def _head(self, probe: dict, head: int | None) -> int:
        """A student head, ALL_HEADS, or the explorer's default (all heads under the mean rule, else head 0)."""
        if head is None:
            return ALL_HEADS if probe.get("head_rule") == "mean" else 0
        if _index(head) and head == ALL_HEADS:
            return ALL_HEADS
        n = int(probe["student_heads"])
        return _choose("student head", head, n, f"each student layer has {n} heads",
                       f", or {ALL_HEADS} (ALL_HEADS) for all heads averaged")

    def _example(self, probe: dict, example: int) -> int:
        n = len(probe["tokens"])
        return _choose("example", example, n, f"run {self.id} recorded {n} probe examples",
                       " (run.examples lists them)")

    def _attention(self, name: str) -> list[np.ndarray]:
        if name not in self._maps:
            self._maps[name] = self.stored.read_attention(name)
        return self._maps[name]

    def _run_models(self, weights: str) -> RunModels:
        if weights not in self._models:
            with _quiet():
                self._models[weights] = reopen(self.stored, weights).run_models()
        return self._models[weights]

    def _triptych(self, probe: dict, t_maps: np.ndarray, s_maps: np.ndarray, tokens, variant: str, layers, head,
                  teacher_head, when: str, title: str, window, gamma: float) -> go.Figure:
        """The explorer's teacher | student | difference figure of one text: (L, H, T, T) maps of each model."""
        s_layer, t_layer = layers
        if teacher_head is not None:
            n = int(probe["teacher_heads"])
            teacher_head = _choose("teacher head", teacher_head, n, f"each teacher layer has {n} heads")
        shown = page_data.shown_maps(t_maps[t_layer], s_maps[s_layer], probe.get("head_rule", "mean"), head,
                                     teacher_head)
        teacher, student = shown.teacher, shown.student
        if window is not None:
            tokens, (teacher, student) = fig_maps.map_window(tokens, window[0], window[1], teacher, student)
        titles = (f"{TEACHER} L{t_layer} · {shown.teacher_desc}", f"{variant} L{s_layer} · {shown.student_desc} · "
                  f"{when}", "student − teacher")
        return fig_maps.heatmap_triptych(teacher, student, tokens, titles=titles, title=title, gamma=gamma)

    # ---- figures --------------------------------------------------------------------------------------------
    def maps(self, layer: int | None = None, head: int | None = None, example: int = 0, variant: str | None = None,
             epoch: int | None = None, *, teacher_layer: int | None = None, teacher_head: int | None = None,
             window: tuple[int, int] | None = None, gamma: float = GAMMA) -> go.Figure:
        """The explorer's maps of a probe example: the teacher's, a variant's and their difference.

        layer: the student layer (default: the first mapped one), beside the teacher layer it is mapped to (or
        teacher_layer); head: the student head, ALL_HEADS for all heads averaged (default: head 0, or all heads
        under the mean head rule), beside the teacher heads the run compared it with (or one teacher_head);
        variant: default the first that is not the reference; epoch: default the last recorded (0 = before
        training); window: (start, stop) to show tokens start..stop-1 of a long text; gamma: the colour scale's
        exponent (0.5: small weights stand out, 1: linear)."""
        probe = self._require_maps()
        example = self._example(probe, example)
        variant = self._variant(variant)
        epoch = self._epoch(variant, epoch)
        labels = probe.get("labels") or []
        label = tasks.example_label(labels[example], probe.get("label_names") or []) if example < len(labels) else ""
        title = f"Probe example #{example}" + (f", label {label}" if label else "")
        return self._triptych(probe, self._attention(TEACHER)[example], self._attention(f"{variant}_e{epoch}")[example],
                              probe["tokens"][example], variant, self._layers(probe, layer, teacher_layer),
                              self._head(probe, head), teacher_head, f"epoch {epoch}", title, window, gamma)

    def maps_for(self, text: str, layer: int | None = None, head: int | None = None, variant: str | None = None, *,
                 weights: str = "final", teacher_layer: int | None = None, teacher_head: int | None = None,
                 window: tuple[int, int] | None = None, gamma: float = GAMMA) -> go.Figure:
        """The same maps for a sentence of your own, read by the teacher and the variant's trained weights (weights:
        "final", or "best" for its best epoch by validation accuracy); the title gives each model's answer. The
        models are loaded on the CPU once per Run and weights."""
        probe = self._require_maps()
        variant = self._variant(variant)
        layers, head = self._layers(probe, layer, teacher_layer), self._head(probe, head)
        rm = self._run_models(weights)
        if variant not in rm.models:
            raise NotebookError(f"run {self.id} kept no trained weights of variant {variant}")
        tokens, maps, probs = analysis.attention_for_text(rm, text)
        names = probe.get("label_names") or []
        said = " · ".join([f"“{text.strip() if len(text.strip()) <= 60 else text.strip()[:59] + '…'}”",
                           *(f"{model_label(m, self.reference)}: {names[int(np.argmax(probs[m]))]} "
                             f"({float(np.max(probs[m])):.0%})" for m in (TEACHER, variant))])
        loaded = rm.loaded.get(variant) or {}
        when = f"{loaded.get('weights', weights)} weights (epoch {loaded.get('epoch')})"
        return self._triptych(probe, maps[TEACHER], maps[variant], tokens, variant, layers, head, teacher_head, when,
                              html.escape(said, quote=False), window, gamma)

    def heads(self, layer: int | None = None, example: int = 0, variant: str | None = None,
              epoch: int | None = None, *, teacher_layer: int | None = None, head: int | None = None,
              gamma: float = GAMMA) -> Figures:
        """Every head of the teacher's layer and of the student's on a probe example, on one colour scale (the
        explorer's grids); red outlines: the student `head` and the teacher heads it was compared with."""
        probe = self._require_maps()
        example = self._example(probe, example)
        variant = self._variant(variant)
        epoch = self._epoch(variant, epoch)
        s_layer, t_layer = self._layers(probe, layer, teacher_layer)
        head = self._head(probe, head)
        t_maps = self._attention(TEACHER)[example][t_layer]
        s_maps = self._attention(f"{variant}_e{epoch}")[example][s_layer]
        shown = page_data.shown_maps(t_maps, s_maps, probe.get("head_rule", "mean"), head)
        zmax, cols = page_data.grid_scale(t_maps, s_maps)
        tokens = probe["tokens"][example]
        compared = tuple(shown.teacher_heads) if len(shown.teacher_heads) < t_maps.shape[0] else ()
        return Figures((
            fig_maps.head_grid(t_maps, tokens, f"{TEACHER} layer {t_layer}", cols=cols, zmax=zmax, gamma=gamma,
                               highlight=compared),
            fig_maps.head_grid(s_maps, tokens, f"{variant} layer {s_layer} · epoch {epoch}", cols=cols, zmax=zmax,
                               gamma=gamma, highlight=() if head == ALL_HEADS else (head,))))

    def divergence(self, metric: str = "js", per_head: bool = False, kind: str | None = None) -> go.Figure:
        """The Divergence page's curves: each variant's attention divergence from the teacher per mapped layer pair,
        by epoch (epoch 0: before training). metric: kl, js, mse or cosine; per_head: a thin line per compared
        head too; kind: a translation run's kind of attention (cross, encoder or decoder; default the first)."""
        if metric not in METRICS:
            raise NotebookError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        records, probe = self.stored.metrics(), self.probe
        if kinds := probe.get("attention_kinds"):
            kind = next(iter(kinds)) if kind is None else kind
            if kind not in kinds:
                raise NotebookError(f"run {self.id} records the kinds of attention {', '.join(kinds)}, not {kind!r}")
            records, probe = of_kind(records, probe, kind)
        elif kind is not None:
            raise NotebookError(f"run {self.id} records one kind of attention; leave kind out (it is for translation "
                                f"runs: cross, encoder or decoder)")
        records = [r for r in records if r.get("attention")]
        if not records:
            raise NotebookError(no_divergence_reason(probe) or
                                f"run {self.id} has not recorded any divergence yet; it appears after its first epoch")
        return fig_divergence.divergence_curves(records, metric, self.variants, self.reference, per_head=per_head,
                                                labels=fig_divergence.pair_labels(probe.get("pairs", [])))

    def _tested(self) -> page_data.Scores:
        scores = self._scores()
        if scores is None or not scores.tested:
            raise NotebookError(f"run {self.id} is {self.status} and has no test score; a run that finishes its "
                                f"session has one")
        return scores

    def accuracy(self) -> go.Figure:
        """The Accuracy page's bars: each variant's test score with its 95% interval, the teacher's as a line and
        what always answering the most common class scores."""
        s = self._tested()
        return fig_accuracy.accuracy_bars(s.accuracy, s.interval_n, variants=self.variants, reference=self.reference,
                                          majority=s.majority, title=f"Test {s.measure}", measure=s.measure)

    def difference(self) -> go.Figure:
        """The Accuracy page's comparison: each variant's score minus the reference's, in points, with its paired
        95% interval."""
        s, ref = self._tested(), self.reference
        if ref is None or not verdict_lines(list(s.verdicts.values()), ref):
            raise NotebookError(f"run {self.id} has no labels-only reference variant with other variants to compare "
                                f"with it; add one (e.g. baseline with the ce loss alone) to the next session")
        return fig_accuracy.difference_chart(list(s.verdicts.values()), ref, self.variants)
