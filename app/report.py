"""One run as a single HTML page that opens offline: for a lecture handout or a bug report.

The page holds the run's identity and settings, its warnings, the test accuracies with their uncertainty and the
verdict against the reference, the costs, the curves over epochs, the layer x head grid of the last epoch and a
chosen set of attention heatmaps. Pure functions (no Streamlit): the Runs page offers the page as a download,
`python -m distill_core report RUN_ID` writes it.

Offline by construction: plotly.js is embedded once in the head and every figure is a `<div>` plus an inline
`<script>` calling it; no tag of the page points at another file, and a Content-Security-Policy in the head makes
the browser refuse any request the page might still make (fetch, images, fonts, frames) except data: and blob:
URLs (what the figures' "download as PNG" button uses).

What plotly.js itself holds (checked on plotly.js 4.1.1, bundled with plotly 7.1): about 45 distinct http(s)
strings, none of them loaded by the figures drawn here:
- map and geo traces' defaults: topojson files from https://cdn.plot.ly/un/ (config `topojsonURL`), basemap
  styles from basemaps.cartocdn.com, tiles from openstreetmap / arcgis / icgc.cat, glyphs from
  fonts.openmaptiles.org, icons from cdn.jsdelivr.net; with their attribution HTML (`<a href="https://...">`);
- the modebar's plotly.com logo link (config `displaylogo`) and the Chart Studio address
  https://cloud.plotly.com/newchart (config `plotlyServerURL`, only for the send-to-cloud / edit buttons);
- links in error and licence texts (get.webgl.org, github.com, feross.org, ...) and the SVG/XML namespaces
  (www.w3.org), which are identifiers, never fetched.
MathJax is never loaded by plotly.js: it typesets with a global MathJax when the page has one. FIGURE_CONFIG
turns typesetting off, points topojson at a relative folder, and removes the logo and the send-to-cloud button
(on by default in plotly.js 4), so even a figure that used those features could not reach out. The bundle's
strings stay as they are (it is embedded verbatim): tests/test_report.py checks everything outside it for
references to other files, and checks in a browser that opening the page attempts no request at all.
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.offline

from app import page_data, tables, tasks
from app.figures import (accuracy as fig_accuracy, curves as fig_curves, divergence as fig_divergence,
                         image_attribution as iac, maps as fig_maps)
from app.tables import MCNEMAR_P, accuracy_rows, vs_column
from distill_core.config import SessionConfig, flat_settings
from distill_core.errors import DistillError
from distill_core.latency import busy_text, conditions_text, run_latency
from distill_core.metrics import map_metric
from distill_core.stats import p_text
from distill_core.store import Run, atomic_write_bytes, dataset_label
from distill_core.verdicts import (accuracy_verdicts, divergence_reading, divergence_series, health_lines,
                                   paired_verdicts, verdict_lines)
from distill_core.vocab import METRIC_LABELS, TEACHER, model_label, run_reference, run_variants

AVERAGE = page_data.AVERAGE       # HeatmapChoice.head: all heads of the layer, averaged
METRIC = "js"                     # the divergence the report draws (the one the run summarises)
GAMMA = 0.5                       # square-root colour scale of the heatmaps, as the explorer's default
DEFAULT_EXAMPLES = 2              # probe examples with heatmaps when none are chosen

# Passed to every figure (see the module docstring for what each setting keeps from being fetched).
FIGURE_CONFIG = {"displaylogo": False, "typesetMath": False, "topojsonURL": "topojson/", "plotlyServerURL": "",
                 "showSendToCloud": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}
# Inline scripts and styles only; data:/blob: images for the PNG download; nothing else, from anywhere.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; frame-src 'none'; base-uri 'none'; "
       "form-action 'none'")

STYLE = """
body { font-family: Inter, 'Source Sans Pro', Arial, sans-serif; color: #111827; margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.3em; margin: 1.8em 0 0.3em; padding-top: 0.6em; border-top: 1px solid #e5e7eb; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.3em; }
p { line-height: 1.45; }
.sub { color: #4b5563; margin-top: 0; }
.notice { background: #eff6ff; border-left: 4px solid #2563eb; padding: 8px 12px; margin: 8px 0 14px; }
.warn { background: #fffbeb; border-left: 4px solid #d97706; padding: 8px 12px; margin: 8px 0 14px; }
.missing { background: #f3f4f6; border-left: 4px solid #6b7280; padding: 8px 12px; margin: 8px 0 14px; }
ul { margin: 4px 0; padding-left: 1.3em; } li { margin: 3px 0; line-height: 1.4; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #e5e7eb; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .tok { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 0.9em; }
.tok { display: inline-block; background: #f3f4f6; border-radius: 3px; padding: 0 4px; margin: 1px 2px; }
.figure { margin: 6px 0 18px; break-inside: avoid; page-break-inside: avoid; }
footer { color: #6b7280; font-size: 0.85em; margin-top: 3em; }
@media print { h2 { break-before: auto; } main { max-width: none; } }
"""


class ReportError(DistillError):
    """A report cannot be built as asked (e.g. a heatmap names an example, layer or epoch the run does not have)."""


@dataclass(frozen=True)
class HeatmapChoice:
    """One teacher | student | difference heatmap of the report.

    example: probe example index; variant: student variant; layer: student layer; head: student head, or -1 for
    all heads averaged; epoch: recorded epoch, None for the last one the variant recorded; teacher_layer: None
    for the teacher layer the student layer is mapped to. The teacher side is the heads the run compared the
    student head with (its head rule), or all teacher heads averaged when the student's are.
    """
    example: int
    variant: str
    layer: int
    head: int = AVERAGE
    epoch: int | None = None
    teacher_layer: int | None = None


# ---- reading the run, tolerating what is missing -------------------------------------------------------
@dataclass
class _Facts:
    run: Run
    status: dict
    config: dict | None
    summary: dict | None
    probe: dict | None
    records: list
    variants: list
    reference: str | None
    objectives: dict
    missing: list


def _read(what: str, read, missing: list, default=None):
    try:
        return read()
    except DistillError as e:
        missing.append(f"{what}: {e}")
        return default


def _objectives(config: dict | None) -> tuple[dict, list, str | None]:
    """(variant -> its weighted losses in words, variant names, reference) from a run's config."""
    try:
        cfg = SessionConfig.from_dict(config)
    except (DistillError, TypeError, ValueError):
        return {}, [], None
    text = {v.name: " + ".join(f"{n} {w:g}" for n, w in v.losses.items() if w > 0) for v in cfg.variants}
    return text, list(cfg.variant_names), cfg.reference


def _facts(run: Run) -> _Facts:
    missing: list[str] = []
    status = _read("status.json", run.status, missing, {}) or {}
    config = _read("config.json", run.config, missing)
    summary = _read("summary.json", run.summary, missing)
    probe = _read("probe.json", run.probe, missing)
    records = run.metrics()
    objectives, cfg_names, cfg_ref = _objectives(config) if config else ({}, [], None)
    source = probe if (probe or {}).get("variants") else summary or probe
    names = run_variants(source) or run_variants(source, records)
    reference = run_reference(source, names) if names else cfg_ref
    names = names or cfg_names
    return _Facts(run, status, config, summary, probe, records, names, reference, objectives, missing)


# ---- the heatmaps -------------------------------------------------------------------------------------
def default_heatmaps(run: Run, examples: Sequence[int] | None = None) -> list[HeatmapChoice]:
    """The report's heatmaps when none are chosen: for each of `examples` (default the first two probe examples),
    every variant but the reference (the reference itself when it is the only one) at the student layer of the
    last mapped layer pair, heads averaged, at its last recorded epoch. Empty when the run has no probe set."""
    try:
        probe = run.probe() or {}
    except DistillError:
        return []
    n = len(probe.get("tokens") or [])
    if not n:
        return []
    examples = list(range(min(DEFAULT_EXAMPLES, n))) if examples is None else [int(i) for i in examples]
    names = run_variants(probe) or run_variants(None, run.metrics())
    ref = run_reference(probe, names)
    recorded = [v for v in names if run.attention_epochs(v)]
    shown = [v for v in recorded if v != ref] or recorded
    pairs = probe.get("pairs") or []
    if tasks.of(probe).pictures and not pairs:
        return []                       # a teacher and students of different families: no maps to set side by side
    layer = int(pairs[-1][1]) if pairs else max(0, int(probe.get("student_layers") or 1) - 1)
    return [HeatmapChoice(i, v, layer) for i in examples for v in shown]


@dataclass(frozen=True)
class _Resolved:
    choice: HeatmapChoice
    epoch: int
    teacher_layer: int
    teacher_heads: tuple


def _index(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _resolve(f: _Facts, choices: Sequence[HeatmapChoice]) -> list[_Resolved]:
    """Check every choice against the run before anything is drawn; a ReportError says what to choose instead."""
    if not choices:
        return []
    probe, rid = f.probe or {}, f.run.id
    tokens = probe.get("tokens") or []
    if not tokens:
        raise ReportError(f"run {rid} recorded no probe set, so it has no attention heatmaps to show; build the "
                          f"report without heatmaps (heatmaps=[])")
    Lt, Ht = int(probe["teacher_layers"]), int(probe["teacher_heads"])
    Ls, Hs = int(probe["student_layers"]), int(probe["student_heads"])
    rule = probe.get("head_rule", "mean")
    mapped = {int(s): int(t) for t, s in probe.get("pairs") or []}
    out = []
    for c in choices:
        if not isinstance(c, HeatmapChoice):
            raise ReportError(f"a heatmap is chosen with a HeatmapChoice, not {type(c).__name__}")
        what = f"heatmap {c}"
        if not _index(c.example) or not 0 <= c.example < len(tokens):
            raise ReportError(f"{what}: example {c.example!r} is out of range; run {rid} has {len(tokens)} probe "
                              f"examples, choose one of 0 to {len(tokens) - 1}")
        if c.variant not in f.variants:
            raise ReportError(f"{what}: run {rid} has no variant {c.variant!r}; choose one of "
                              f"{', '.join(f.variants) or 'none'}")
        epochs = f.run.attention_epochs(c.variant)
        if not epochs:
            raise ReportError(f"{what}: variant {c.variant} recorded no attention maps in run {rid}; choose a "
                              f"variant that trained at least one epoch")
        epoch = epochs[-1] if c.epoch is None else c.epoch
        if epoch not in epochs:
            raise ReportError(f"{what}: variant {c.variant} has no attention maps of epoch {c.epoch!r}; choose one "
                              f"of the recorded epochs {', '.join(map(str, epochs))}, or None for the last")
        if not _index(c.layer) or not 0 <= c.layer < Ls:
            raise ReportError(f"{what}: student layer {c.layer!r} is out of range; the student has {Ls} layers, "
                              f"choose one of 0 to {Ls - 1}")
        if not _index(c.head) or not (c.head == AVERAGE or 0 <= c.head < Hs):
            raise ReportError(f"{what}: student head {c.head!r} is out of range; the student has {Hs} heads, "
                              f"choose one of 0 to {Hs - 1}, or -1 for all heads averaged")
        t_layer = mapped.get(c.layer) if c.teacher_layer is None else c.teacher_layer
        if t_layer is None:
            raise ReportError(f"{what}: student layer {c.layer} is not mapped to a teacher layer; choose a mapped "
                              f"student layer ({', '.join(map(str, sorted(mapped))) or 'none'}) or name "
                              f"teacher_layer")
        if not _index(t_layer) or not 0 <= t_layer < Lt:
            raise ReportError(f"{what}: teacher layer {t_layer!r} is out of range; the teacher has {Lt} layers, "
                              f"choose one of 0 to {Lt - 1}")
        heads = page_data.teacher_heads(c.head, rule, Ht, Hs)
        out.append(_Resolved(c, int(epoch), int(t_layer), tuple(int(h) for h in heads)))
    return out


# ---- HTML pieces --------------------------------------------------------------------------------------
def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _md(text: str) -> str:
    """The few markdown marks the chart texts use (**bold**, `code`), after escaping everything else."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _notice(text: str) -> str:
    return f'<p class="notice"><strong>What to notice:</strong> {_md(text)}</p>'


def _items(lines: Sequence[str], cls: str = "") -> str:
    if not lines:
        return ""
    body = "".join(f"<li>{_md(x)}</li>" for x in lines)
    return f'<div class="{cls}"><ul>{body}</ul></div>' if cls else f"<ul>{body}</ul>"


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<td class="num">–</td>'
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f'<td class="num">{_e(v)}</td>'
    return f"<td>{_e(v)}</td>"


NUMBER = re.compile(r"[+\-−<>= ]*[\d.]+( to [+\-]?[\d.]+)?[%×]?")    # a cell right-aligned as a number


def _table(rows: Sequence[dict], table_id: str = "", numbers: bool = True) -> str:
    """A table of pre-formatted cells (with numbers, strings that hold a number are right-aligned)."""
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            numeric = numbers and isinstance(v, str) and NUMBER.fullmatch(v)
            cells.append(f'<td class="num">{_e(v)}</td>' if numeric else _cell(v) if numbers else
                         f"<td>{_e('–' if v is None else v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(fig, name: str) -> str:
    """A figure as a <div> with its inline script, every axis set to make room for its labels (automargin).

    The figures keep small margins (10 px left and below) because on the app's pages Streamlit's Plotly theme turns
    automargin on for every axis; a page of its own has no such theme, so without this the tick labels were cut at
    the figure's edge ("[CLS]" read "S]", "distilled student" lost its start) whatever the window's width."""
    fig = go.Figure(fig)                         # a copy: the caller's figure is left as it was
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    div = fig.to_html(full_html=False, include_plotlyjs=False, config=FIGURE_CONFIG, default_width="100%")
    return f'<div class="figure" data-figure="{_e(name)}">{div}</div>'


def _section(sid: str, title: str, notice: str | None, body: str) -> str:
    return (f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>' + (_notice(notice) if notice else "") + body
            + "</section>")


def _missing(text: str) -> str:
    return f'<p class="missing">{_md(text)}</p>'


def _pct(x) -> str | None:
    return None if x is None else f"{100 * x:.1f}"


def _when(iso) -> str:
    return str(iso).replace("T", " ").replace("Z", " UTC") if iso else "–"


# ---- sections -----------------------------------------------------------------------------------------
def _setting_text(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "null" if v is None else str(v)


def _pairs_text(probe: dict) -> str:
    pairs = probe.get("pairs") or []
    if not pairs:
        return "–"
    return ", ".join(fig_divergence.pair_labels(pairs)) + f" (head rule {probe.get('head_rule', '?')})"


STATUS_PHRASES = {"done": "finished", "failed": "failed", "cancelled": "was cancelled", "running": "is still running",
                  "queued": "is queued", "interrupted": "was interrupted", "unknown": "has no readable status"}


def _ran(status: str) -> str:
    """How a run ended, after "the run": "failed", "was cancelled", "is still running"."""
    return STATUS_PHRASES.get(status, f"is {status}")


def _no_test(status: str) -> str:
    if status in ("running", "queued"):
        return f"the run {_ran(status)}: its test evaluation comes when it ends"
    return f"the run {_ran(status)} before its test evaluation"


def _what_is_missing(f: _Facts) -> list[str]:
    status = f.status.get("status", "unknown")
    s = f.summary
    out = list(f"could not read {x}" for x in f.missing)
    if s is None:
        out.append(f"no summary.json: the run {_ran(status)}, so there are no test results, sizes or latencies")
    elif all((s.get("accuracy") or {}).get(m) is None for m in (TEACHER, *f.variants)):
        out.append(f"no test accuracy: {_no_test(s.get('status', status))}")
    if not f.records:
        out.append("no epoch recorded: no validation accuracy or divergence curves")
    if not (f.probe or {}).get("tokens"):
        out.append("no probe set: no attention heatmaps")
    return out


def _image_shape(desc: dict) -> str:
    """An image model's shape from probe.json's maps: "CNN, 3 stages" or "ViT, 4 layers × 4 heads, 4-pixel patches"."""
    if desc.get("family") == "cnn":
        return f"CNN, {desc.get('stages', '?')} stages"
    return (f"ViT, {desc.get('layers', '?')} layers × {desc.get('heads', '?')} heads, {desc.get('patch', '?')}-pixel "
            f"patches")


def _header(f: _Facts, written: str) -> str:
    cfg, probe, s, st = f.config or {}, f.probe or {}, f.summary or {}, f.status
    name = cfg.get("name") or ""
    status = st.get("status", "unknown")
    params = s.get("params") or {}
    data = cfg.get("data") or {}
    source = str(data.get("source", ""))
    t_shape = (f"{probe['teacher_layers']} layers × {probe['teacher_heads']} heads" if "teacher_layers" in probe
               else "unknown (no probe set recorded)")
    student = cfg.get("student") or {}
    s_layers, s_heads = probe.get("student_layers", student.get("layers")), probe.get("student_heads",
                                                                                        student.get("heads"))
    s_shape = f"{s_layers} layers × {s_heads} heads, {student.get('hidden', '?')} wide"
    maps = probe.get("maps") or {}
    if tasks.of(probe).pictures and maps.get("teacher") and maps.get("student"):
        t_shape, s_shape = _image_shape(maps["teacher"]), _image_shape(maps["student"])
    first = next((v for v in f.variants if v in params), None)
    rows = [("run", f.run.id), ("name", name or "–"), ("status", status),
            *([("problem", st["error"])] if st.get("error") else []),
            ("queued", _when(st.get("queued"))) if st.get("queued") else None,
            ("started", _when(st.get("started"))), ("ended", _when(st.get("ended"))),
            ("dataset", f"{dataset_label(source)}" + (f" ({source})" if source and dataset_label(source) != source
                                                       else "")),
            ("data sizes", ", ".join(f"{k.split('_')[0]} {data[k]}" for k in ("train_size", "val_size",
                                                                               "test_size", "probe_size")
                                     if data.get(k) is not None) or "–"),
            ("teacher", f"{(cfg.get('teacher') or {}).get('source', '?')}: {t_shape}"
                        + (f", {params[TEACHER] / 1e6:.2f} M parameters" if TEACHER in params else "")),
            ("student", s_shape + (f", {params[first] / 1e6:.2f} M parameters" if first else "")),
            ("layer mapping", _pairs_text(probe or s)),
            ("variants", ", ".join(f"{v}{' (reference)' if v == f.reference else ''}: {f.objectives.get(v, '?')}"
                                   for v in f.variants) or "–"),
            ("epochs recorded", str(max((r.get("epoch", 0) for r in f.records), default=0)) if f.records else "none"),
            ("device, wall time", f"{s.get('device', '–')}, {s['wall_s']:.0f} s" if s.get("wall_s") else "–")]
    table = "<table id=\"run\"><tbody>" + "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in (r for r in rows if r)) + "</tbody></table>"
    notice = ("Every variant is the same student, started from the same weights and trained on the same batches: "
              "only their objectives differ. The reference is the variant trained on the labels only."
              if f.reference else "Every variant is the same student, started from the same weights and trained on "
                                  "the same batches: only their objectives differ. This run has no labels-only "
                                  "reference variant.")
    missing = _what_is_missing(f)
    lacks = (_missing(f"**This report lacks** what the run did not record (the run {_ran(status)}):")
             + _items(missing, "missing")) if missing else ""
    title = f"Run {f.run.id}" + (f" · {name}" if name else "")
    return (f"<header><h1>{_e(title)}</h1><p class=\"sub\">Attention distillation report, written {_e(written)}"
            f"</p></header>" + _section("overview", "The run", notice, table + lacks))


def _settings(f: _Facts) -> str:
    if f.config is None:
        return _section("settings", "Settings", None, _missing("The run has no readable config.json."))
    rows = [{"setting": k, "value": _setting_text(v)} for k, v in flat_settings(f.config).items()]
    return _section("settings", "Settings", "The run's config.json, flattened: every setting the session ran "
                    "with, defaults included, so the run can be repeated.",
                    _table(rows, "settings-table", numbers=False))


def _warnings(f: _Facts) -> str:
    s = f.summary or {}
    warns = health_lines(s.get("warnings") or [])
    notices = list(s.get("notices") or (f.probe or {}).get("notices") or [])
    body = ""
    if warns:
        body += "<h3>Warnings</h3>" + _items(warns, "warn")
    if notices:
        body += "<h3>About the data and training</h3>" + _items(notices)
    if not body:
        body = _missing("No warnings and no notices" + ("." if s else ": the run has no summary.json."))
    notice = ("Read the warnings before any accuracy: a model that answers one class, or does not beat always "
              "answering the most common one, has learned nothing to compare." if warns else
              "The test results drew no warnings." if s.get("warnings") is not None else
              "Notices say how the data and the teacher were prepared.")
    return _section("warnings", "Warnings and notices", notice, body)


def _as_text(row: dict, reference: str | None) -> dict:
    """A row of tables.accuracy_rows as the report writes it: one decimal, differences signed, p as p_text does."""
    formats = {tables.HALFWIDTH: "{:.1f}", vs_column(reference): "{:+.1f}", tables.OF_TEACHER: "{:.0f}"}
    out = {}
    for k, x in row.items():
        if x is not None and k in (MCNEMAR_P, tables.RANDOMISATION_P):
            x = p_text(x).removeprefix("p ").removeprefix("= ")
        elif x is not None and k.endswith(" (%)"):          # the run's score: accuracy, F1 or chrF
            x = f"{x:.1f}"
        elif x is not None and k in formats:
            x = formats[k].format(x)
        out[k] = x
    return out


def _accuracy(f: _Facts) -> str:
    s, names, ref = f.summary, f.variants, f.reference
    acc = (s or {}).get("accuracy") or {}
    if s is None or all(acc.get(m) is None for m in (TEACHER, *names)):
        why = (s or {}).get("error") or f.status.get("error") or ""
        status = (s or {}).get("status") or f.status.get("status", "unknown")
        body = _missing(f"No test accuracy: {_no_test(status)}{': ' + why if why else ''}.")
        val = (s or {}).get("val_accuracy") or {}
        epochs = ((s or {}).get("divergence") or {}).get("epochs") or []
        rows = [{"epoch": e, **{model_label(v, ref): _pct(val[v][k]) for v in names
                                if len(val.get(v) or []) == len(epochs)}} for k, e in enumerate(epochs)]
        if rows and len(rows[0]) > 1:
            body += "<p>Validation accuracy (%) of the epochs it finished (not a test result):</p>" + _table(
                rows, "validation-table")
        return _section("accuracy", "Test accuracy", "A run that did not finish has no test result; the validation "
                        "accuracy per epoch is all it measured.", body)
    n = int(s.get("test_size") or 0)
    paired = s.get("paired") or {}
    metric = s.get("metric") or {"name": "accuracy", "short": "accuracy"}
    measure = metric.get("name", "accuracy")
    units = any(c.get("statistic") for c in paired.values())
    verdict_rows = (paired_verdicts(paired, acc, names, ref) if paired
                    else accuracy_verdicts(acc, n, names, ref))
    verdicts = {r["variant"]: r for r in verdict_rows}
    rows = accuracy_rows((TEACHER, *names), acc, n, verdicts, lambda m: model_label(m, ref), f.objectives,
                         s.get("params") or {}, ref, paired=bool(paired), independent=True,
                         metric=metric.get("short", "accuracy"))
    body = _table([_as_text(r, ref) for r in rows], "accuracy-table")
    majority = s.get("majority_rate")
    if measure != "accuracy":
        body += f"<p>The score is <strong>{_e(measure)}</strong> (higher is better), test set: {n:,} examples.</p>"
        details = s.get("details") or {}
        table = fig_accuracy.details_table(details, [m for m in (TEACHER, *names) if m in details])
        if table:
            body += _table([{k: f"{v:.1f}" if isinstance(v, float) else v
                             for k, v in {**r, "model": model_label(r["model"], ref)}.items()} for r in table],
                           "details-table")
        body += "".join(_items([x]) for x in fig_accuracy.details_notes(details, list(details),
                                                                      lambda m: model_label(m, ref)))
    else:
        body += (f"<p>Test set: {n:,} examples. ± 95%: this model's own uncertainty, 1.96·√(p(1−p)/n)."
             + (f" Always answering the most common class scores <strong>{majority:.1%}</strong>: a model has "
                f"learned something only if it clearly beats that." if majority is not None else "") + "</p>")
    lines = verdict_lines(list(verdicts.values()), ref)
    if lines:
        how = (f"Each variant is paired with the reference on the same examples: the interval is a paired bootstrap "
               f"of the difference in {measure}, the p-value an approximate randomisation test." if units else
               "Each variant is paired with the reference on the same examples: McNemar's exact test counts the "
               "examples only one of them got right, and the interval is a paired bootstrap of the difference."
               if paired else "Each interval treats the two accuracies as independent; the variants answered the "
               "same examples, so a paired test would be somewhat tighter.")
        body += ("<h3>Each variant against the reference</h3>" + _items(lines)
                 + f"<p>Measured on {n:,} test examples with one seed: another seed or a larger test set may change "
                   f"the result. {_e(how)}</p>")
    elif ref is None:
        body += _missing("This run has no reference variant (one trained on the labels only), so there is no "
                         "verdict: compare the accuracies and their intervals.")
    body += _figure(fig_accuracy.accuracy_bars(acc, n if measure == "accuracy" else None, variants=names,
                                               reference=ref, majority=majority, title=f"Test {measure}",
                                               measure=measure), "accuracy_bars")
    if lines:
        body += _figure(fig_accuracy.difference_chart(list(verdicts.values()), ref, names), "difference")
    kinds = [r["verdict"] for r in verdict_rows if r["verdict"] != "reference"]
    if kinds and ref:
        better, worse = kinds.count("better"), kinds.count("worse")
        unclear = len(kinds) - better - worse
        notice = (f"Against the {model_label(ref, ref)}: {better} variant{'s' if better != 1 else ''} clearly "
                  f"better, {worse} clearly worse, {unclear} not clearly different on these {n:,} examples; an "
                  f"interval that includes zero cannot tell two models apart.")
    else:
        notice = "The whiskers are 95% intervals: two bars whose whiskers overlap may not differ."
    return _section("accuracy", f"Test {measure}", notice, body)


def _efficiency(f: _Facts) -> str:
    s = f.summary or {}
    measured = run_latency(f.run, s)
    params, size, latency = s.get("params") or {}, s.get("size_bytes") or {}, measured.latency_ms
    if not (params or size or latency):
        return _section("efficiency", "Size and speed", None,
                        _missing("No sizes or latencies: the run has no summary of its models."))
    ref, t_lat = f.reference, latency.get(TEACHER)
    flag = " (under load)" if measured.busy else ""
    rows = [{"model": model_label(m, ref),
             "params (M)": f"{params[m] / 1e6:.2f}" if m in params else None,
             "size (MB)": f"{size[m] / 1e6:.1f}" if m in size else None,
             "latency (ms)": f"{latency[m]:.1f}" if latency.get(m) is not None else None,
             "speed-up": f"{t_lat / latency[m]:.1f}×{flag}" if t_lat and latency.get(m) else None}
            for m in (TEACHER, *f.variants) if m in params or m in size or m in latency]
    device = measured.device or s.get("device") or "unknown device"
    busy = busy_text(measured.conditions)
    body = ((f'<p class="warn">{_md(busy)}</p>' if busy else "") + _table(rows, "efficiency-table")
            + f'<p class="conditions">{_md(conditions_text(measured.conditions))}'
            + (" These figures were measured again after the session." if measured.remeasured else "") + "</p>"
            + _figure(fig_accuracy.efficiency_bars(params, size, latency, device + (", under load" if busy else ""),
                                                   f.variants, ref), "efficiency_bars"))
    first = next((v for v in f.variants if v in params), None)
    ratio = (f" The student has {params[TEACHER] / params[first]:.1f}× fewer parameters than the teacher."
             if first and params.get(TEACHER) and params[first] else "")
    return _section("efficiency", "Size and speed", f"Latency is the median time to classify one example (batch "
                    f"of 1) on {device}; every variant has the same size, only the objectives differ.{ratio}", body)


TITLE_CURVES = "Validation accuracy and divergence over epochs"


def _curves(f: _Facts) -> str:
    records = f.records
    if not records:
        return _section("curves", TITLE_CURVES, None, _missing("No epoch was recorded, so there are no curves."))
    names, ref = f.variants, f.reference
    epochs = ((f.config or {}).get("train") or {}).get("epochs")
    measure = ((f.probe or {}).get("metric") or {}).get("name", "accuracy")
    body = _figure(fig_curves.variant_lines(records, lambda r: r.get("val_accuracy"), f"Validation {measure}",
                                            measure, names, ref, epochs, height=320, y_range=(0.0, 1.02)),
                   "validation")
    div = [r for r in records if r.get("attention")]
    notice = "Epoch 0 is before training: every variant starts from the same weights."
    if not div and iac.no_divergence_reason(f.probe):
        notice += " " + iac.no_divergence_reason(f.probe)
    if div:
        labels = fig_divergence.pair_labels((f.probe or f.summary or {}).get("pairs") or [])
        notice += " " + divergence_reading(div, METRIC, labels, names, ref)
        body += (f"<h3>Attention divergence from the teacher ({_e(METRIC_LABELS[METRIC])}, lower = closer)</h3>"
                 + _figure(fig_divergence.divergence_curves(div, METRIC, names, ref, labels=labels), "divergence")
                 + "<p>One panel per mapped layer pair, the mean over compared heads; dashed: the reference.</p>")
    return _section("curves", TITLE_CURVES, notice, body)


def _grid(f: _Facts) -> str:
    div = [r for r in f.records if "attention" in r]
    series = {v: divergence_series(div, v, METRIC) for v in f.variants}
    series = {v: s for v, s in series.items() if s[0]}
    if not series:
        return _section("grid", "Layer × head at the last epoch", None,
                        _missing(iac.no_divergence_reason(f.probe)
                                 or "No divergence was recorded, so there is no layer × head grid."))
    epoch = max(e for es, _ in series.values() for e in es)
    grids = {v: vals[np.asarray(e) == epoch][0] for v, (e, vals) in series.items() if epoch in e}
    n_rows = next(iter(grids.values())).shape[0]
    labels = fig_divergence.pair_labels((f.probe or f.summary or {}).get("pairs") or [])
    rows = labels if len(labels) == n_rows else [f"pair {k}" for k in range(n_rows)]
    fig = fig_divergence.variant_grids(grids, rows, METRIC, f.variants, f.reference,
                                       title=f"{METRIC_LABELS[METRIC]} at epoch {epoch}")
    left_out = [v for v in series if v not in grids]
    extra = f" Not at epoch {epoch}: {', '.join(left_out)}." if left_out else ""
    return _section("grid", f"Layer × head at epoch {epoch}", "Every variant on one colour scale, darker red = "
                    "further from the teacher; rows are the mapped layer pairs, columns the compared heads: a "
                    f"head that stays red kept its own way of attending.{extra}", _figure(fig, "grid"))


def _heatmaps(f: _Facts, chosen: list[_Resolved]) -> str:
    probe = f.probe or {}
    if not chosen:
        why = ("the teacher and the students are of different families, so no maps were recorded side by side"
               if iac.no_divergence_reason(probe) else "no heatmaps were chosen" if probe.get("tokens") else
               "the run recorded no probe set, so there are no attention maps")
        return _section("heatmaps", "Attention heatmaps", None, _missing(f"No heatmaps: {why}."))
    cache: dict[str, list] = {}

    def maps(name: str):
        if name not in cache:
            cache[name] = f.run.read_attention(name)
        return cache[name]

    Ht, Hs = int(probe["teacher_heads"]), int(probe["student_heads"])
    names, labels = probe.get("label_names") or [], probe.get("labels") or []
    texts = probe.get("texts") or []
    body = []
    for r in chosen:
        c = r.choice
        tokens = probe["tokens"][c.example]
        try:
            t_maps = maps("teacher")[c.example][r.teacher_layer]                    # (Ht, T, T)
            s_maps = maps(f"{c.variant}_e{r.epoch}")[c.example][c.layer]             # (Hs, T, T)
        except (DistillError, IndexError) as e:
            body.append(_missing(f"Example #{c.example}, {c.variant}: the attention maps cannot be read ({e})."))
            continue
        heads = list(r.teacher_heads)
        teacher = t_maps[heads].mean(0)
        student = s_maps.mean(0) if c.head == AVERAGE else s_maps[c.head]
        t_desc = (f"head {heads[0]}" if len(heads) == 1 else f"all {Ht} heads averaged" if len(heads) == Ht
                  else f"heads {heads[0]}–{heads[-1]} averaged")
        s_desc = f"all {Hs} heads averaged" if c.head == AVERAGE else f"head {c.head}"
        label = tasks.example_label(labels[c.example], names) if c.example < len(labels) else "?"
        js = float(map_metric(METRIC, teacher, student))
        titles = (f"teacher L{r.teacher_layer} · {t_desc}", f"{c.variant} L{c.layer} · {s_desc} · epoch {r.epoch}",
                  "student − teacher")
        if iac.is_pixel_run(probe):                 # a CNN's maps are distributions over the picture's pixels
            t_px, s_px = (iac.pixel_maps(m, probe["image_size"]) for m in (teacher, student))
            fig = iac.overlay_panels(iac.probe_picture(probe, c.example), [t_px, s_px, s_px - t_px], list(titles),
                                     ["positive", "positive", "difference"])
        else:
            fig = fig_maps.heatmap_triptych(teacher, student, tokens, gamma=GAMMA, titles=titles)
        text = texts[c.example] if c.example < len(texts) else ""
        body.append(
            f'<div class="heatmap" data-example="{c.example}" data-variant="{_e(c.variant)}">'
            f"<h3>Example #{c.example} · {_e(model_label(c.variant, f.reference))} · student layer {c.layer} vs "
            f"teacher layer {r.teacher_layer} · epoch {r.epoch}</h3>"
            f"<p>Label <strong>{_e(label)}</strong>: “{_e(text)}”</p>"
            + (f"<p>Tokens ({len(tokens)}): " + "".join(f'<span class="tok">{_e(t)}</span>' for t in tokens) + "</p>"
               if tokens else "")
            + f"<p>{_e(METRIC_LABELS[METRIC])} between the two maps shown: {js:.4g}.</p>"
            + _figure(fig, f"heatmap {c.example} {c.variant}") + "</div>")
    about = ("Each map is a CNN stage's activation attention over the picture's pixels (it sums to 1), drawn over "
             "the picture and scaled to its own largest weight" if iac.is_pixel_run(probe) else
             "Each row is a query token, each column a key it attends to, and each row sums to 1. Teacher and student "
             "share one square-root colour scale (small weights stay visible)")
    return _section("heatmaps", "Attention heatmaps", f"{about}; in the difference, red is where the student attends "
                    "more than the teacher, blue where less.", "".join(body))


# ---- the page -----------------------------------------------------------------------------------------
def build_report(run: Run, heatmaps: Sequence[HeatmapChoice] | None = None) -> str:
    """The run as one self-contained HTML page (a string). heatmaps None: default_heatmaps(run).

    A run that failed, was cancelled or has no summary still gets its page, saying what it lacks. A heatmap the
    run cannot show raises ReportError before anything is drawn."""
    f = _facts(run)
    chosen = _resolve(f, default_heatmaps(run) if heatmaps is None else list(heatmaps))
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    name = (f.config or {}).get("name") or ""
    sections = [_header(f, written), _settings(f), _warnings(f), _accuracy(f), _efficiency(f), _curves(f),
                _grid(f), _heatmaps(f, chosen)]
    title = f"Run {run.id}" + (f" · {name}" if name else "") + " · attention distillation report"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n"
            "<!-- plotly.js (MIT licence), embedded so that the page needs nothing else -->\n"
            f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n'
            "</head>\n<body>\n<main>\n" + "\n".join(sections)
            + f"\n<footer>Written by attention distillation studio from run folder {_e(run.id)}. "
              "Everything this page shows is inside it: it opens offline.</footer>\n</main>\n</body>\n</html>\n")


def write_report(run: Run, path: str | Path, heatmaps: Sequence[HeatmapChoice] | None = None) -> Path:
    """Build the report and write it to `path` (atomically; its folder is created). Returns the path."""
    path = Path(path)
    atomic_write_bytes(path, build_report(run, heatmaps).encode("utf-8"))
    return path
