"""How long each page of the app takes to build its figures, for finished runs (performance target 4).

Each page file of app/views/ is run once with Streamlit's AppTest on a run, at the view it opens on (the run
given, every other choice at its default). While it runs, the figure functions of the app's chart modules are
recorded: every outermost call that returns a plotly figure, with its arguments, and which figures the page
hands to `st.plotly_chart`. The page's figures are then built again from those calls, `repeats` times, each
drawn figure with `fig.to_json()` (what Streamlit sends to the browser), and the medians reported. So the
benchmark calls the same functions with the same arguments as the page, derived by the page itself from the
run's files; reading the files, running models (live text, attributions) and Streamlit's own work are not timed.

Besides the pages as they open: the explorer on a typed text of 64 tokens (the longest the default data keeps)
and the whole layers x heads grid of the teacher at those 64 tokens; the Runs page's HTML report, built when its
download button is pressed.

    .venv/bin/python benchmarks/figures_bench.py                     # makes the two runs, then measures them
    .venv/bin/python benchmarks/figures_bench.py --runs-dir runs     # every finished run of a run store

The runs it makes have the default shapes, test and probe sizes and a small training set (300 examples, 2 epochs):
figures depend on sizes (layers, heads, tokens, epochs, variants, test size), not on how well the students learned.
About 10 minutes on 2 busy cores once the teacher is cached; the first time, the teacher is fine-tuned for the
data split of these sizes (about 15 minutes on one thread) and cached.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_S = 0.5
PAGES = ("accuracy", "divergence", "explorer", "compare", "attributions", "generated", "compression", "runs", "sweep")
EXPLORER_TEXT = "explorer, a 64-token text"
EXPLORER_GRID = "explorer, all layers x heads (64 tokens)"
REPORT = "runs, HTML report"
CHART_MODULES = ("app.figures.base", "app.figures.maps", "app.figures.curves", "app.figures.divergence",
                 "app.figures.accuracy", "app.figures.compare", "app.figures.attribution", "app.figures.sweep",
                 "app.figures.compression", "app.figures.images", "app.figures.image_attribution",
                 "app.figures.teachers")
VIEWS = ROOT / "app" / "views"
PAGE_TIMEOUT_S = 600.0                 # a page that runs models (attributions, a typed text) on one CPU thread

# The runs the command line makes: default shapes and test/probe sizes, a small training set.
KD = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}
EXTRA_VARIANTS = [
    {"name": "kd", "losses": {"ce": 0.5, "logit_kd": 0.5}},
    {"name": "adaptive", "losses": KD, "schedules": {"attention_kl": "linear_down"},
     "temperature_schedule": "linear_down", "temperature_range": [1.0, 4.0], "auto_weights": "magnitude"},
    {"name": "adversarial", "losses": KD, "adversarial": {"method": "pgd", "epsilon": 0.05, "steps": 2},
     "schedules": {"adversarial": "linear_up"}},
    {"name": "generated", "losses": KD, "generated": True},
]


# ---- recording what a page draws ----------------------------------------------------------------------
class Recorder:
    """While active: the outermost calls of the chart modules' functions that return a figure (function, copies of
    its arguments, the figure), and the figures given to st.plotly_chart; also the live attention of typed texts."""

    def __init__(self):
        self.calls: list[tuple] = []           # (function, args, kwargs, figure)
        self.drawn: list = []                  # figures handed to st.plotly_chart, in order
        self.live: list = []                   # results of app.live.attention_for_text
        self._depth = 0
        self._undo: list[tuple] = []

    def _wrap(self, fn):
        from plotly.basedatatypes import BaseFigure

        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            if self._depth:                    # called by another chart function: part of that one's figure
                return fn(*args, **kwargs)
            try:
                saved = copy.deepcopy((args, kwargs))
            except Exception:  # noqa: BLE001 - an argument that cannot be copied is replayed as it is
                saved = (args, kwargs)
            self._depth += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                self._depth -= 1
            if isinstance(out, BaseFigure):
                self.calls.append((fn, *saved, out))
            return out
        return recorded

    def _patch(self, owner, name, new):
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def __enter__(self):
        import inspect

        import streamlit as st
        from streamlit.elements.plotly_chart import PlotlyMixin

        from app import common
        common.forget_shared_figures()         # the page builds its figures (as for its first visitor), recorded
        for mod_name in CHART_MODULES:
            mod = importlib.import_module(mod_name)
            for name, obj in list(vars(mod).items()):
                if inspect.isfunction(obj) and obj.__module__ == mod_name:
                    self._patch(mod, name, self._wrap(obj))
        original = PlotlyMixin.plotly_chart

        def plotly_chart(dg, figure_or_data, *args, **kwargs):
            self.drawn.append(figure_or_data)
            return original(dg, figure_or_data, *args, **kwargs)
        self._patch(PlotlyMixin, "plotly_chart", plotly_chart)
        self._patch(st, "plotly_chart", lambda *a, **k: plotly_chart(st._main, *a, **k))
        from app import live
        attention_for_text = live.attention_for_text

        def live_attention(*args, **kwargs):
            out = attention_for_text(*args, **kwargs)
            self.live.append(out)
            return out
        self._patch(live, "attention_for_text", live_attention)
        return self

    def __exit__(self, *exc):
        while self._undo:
            owner, name, old = self._undo.pop()
            setattr(owner, name, old)


@contextlib.contextmanager
def _runs_dir(root: Path):
    old = os.environ.get("ADS_RUNS_DIR")
    os.environ["ADS_RUNS_DIR"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ADS_RUNS_DIR", None)
        else:
            os.environ["ADS_RUNS_DIR"] = old


def record_page(page: str, root: Path, run_id: str, query: dict | None = None, state: dict | None = None):
    """Run one page file on a run (AppTest) and return (Recorder, AppTest)."""
    from streamlit.testing.v1 import AppTest

    from app.state import SELECTED_RUN
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)          # setting up an AppTest outside a script warns that it is outside one
    try:
        at = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=PAGE_TIMEOUT_S)
        for k, v in {"run": run_id, **(query or {})}.items():
            at.query_params[k] = v
        at.session_state[SELECTED_RUN] = run_id
        for k, v in (state or {}).items():
            at.session_state[k] = v
    finally:
        quiet.setLevel(level)
    with _runs_dir(root), Recorder() as rec:
        at.run(timeout=PAGE_TIMEOUT_S)
    if at.exception:
        raise RuntimeError(f"the {page} page raised: {at.exception[0].value}")
    return rec, at


def _messages(at) -> list[str]:
    return [str(e.value) for kind in ("info", "warning", "error") for e in at.get(kind)]


# ---- timing ------------------------------------------------------------------------------------------
def time_builds(build, repeats: int) -> dict:
    """`build()` -> (figures, json bytes) once to warm up, then `repeats` times timed."""
    build()
    times, figures, size = [], 0, 0
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        figures, size = build()
        times.append(time.perf_counter() - t0)
    return {"median_s": median(times), "min_s": min(times), "max_s": max(times), "figures": figures,
            "json_bytes": size, "builds": len(times)}


def time_recorded(rec: Recorder, repeats: int) -> dict:
    """The page's figures built again from the recorded calls, each drawn one with its JSON."""
    drawn_ids = {id(f) for f in rec.drawn}
    calls = [(fn, args, kwargs, id(fig) in drawn_ids) for fn, args, kwargs, fig in rec.calls]
    built_ids = {id(fig) for *_, fig in rec.calls}
    other = [f for f in rec.drawn if id(f) not in built_ids]   # drawn, but not made by a chart module

    def build():
        n = size = 0
        for fn, args, kwargs, drawn in calls:
            fig = fn(*args, **kwargs)
            if drawn:
                n, size = n + 1, size + len(fig.to_json())
        for fig in other:
            n, size = n + 1, size + len(fig.to_json() if hasattr(fig, "to_json") else json.dumps(fig))
        return n, size

    out = time_builds(build, repeats)
    out["charts"] = [getattr(fn, "__name__", str(fn)) for fn, *_ in calls]
    if other:
        out["note"] = f"{len(other)} drawn figure(s) not made by a chart module: only their JSON is timed"
    return out


def _na(why: str) -> dict:
    return {"na": why}


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.replace("*", "").split())
    return text if len(text) <= n else text[:n - 1] + "…"


def measure_page(page: str, root: Path, run_id: str, repeats: int, query: dict | None = None,
                 state: dict | None = None) -> tuple[dict, Recorder | None]:
    try:
        rec, at = record_page(page, root, run_id, query, state)
    except Exception as e:  # noqa: BLE001 - one page's failure is reported, the others are still measured
        return _na(f"the page failed: {type(e).__name__}: {_short(str(e))}"), None
    if not rec.drawn:
        said = _messages(at)
        if page == "runs":
            out = time_recorded(rec, repeats)
            out["note"] = "the page draws no figures; its HTML report is built when downloaded (next row)"
            return out, rec
        if page == "generated" and not said:
            return _na("a text run's generated examples are a table, not figures"), rec
        return _na(f"no figures: {_short(said[0])}" if said else "the page drew no figures"), rec
    return time_recorded(rec, repeats), rec


# ---- one run, every page -----------------------------------------------------------------------------
def _long_text(probe: dict) -> str:
    """A text longer than 64 tokens made of the run's probe texts (the models read its first 64 tokens)."""
    return " ".join(sorted(probe.get("texts") or [], key=len, reverse=True))


def _sweeps_with(root: Path, run_id: str) -> list[str]:
    from distill_core.sweep import SweepStore
    try:
        return [s["id"] for s in SweepStore(root).list() if run_id in (s.get("runs") or {}).values()]
    except Exception:  # noqa: BLE001 - a damaged sweep store: no sweep to show
        return []


def bench_run(run_dir: Path, repeats: int = 5, log=None, pages: Sequence[str] | None = None) -> dict:
    """Every page's figures for one finished run folder (or only `pages`)."""
    from app.figures import maps as fig_maps
    from app import run_list as rl
    from distill_core import RunStore, compress
    from distill_core.vocab import TEACHER
    run_dir = Path(run_dir).resolve()
    root, run_id = run_dir.parent, run_dir.name
    run = RunStore(root).open(run_id)
    probe = run.probe() or {}
    summary = run.summary() or {}
    image = probe.get("modality") == "image"
    names = list(probe.get("variants") or summary.get("variants") or [])
    info = {"run_id": run_id, "path": str(run_dir), "variants": names, "status": run.status().get("status"),
            "modality": probe.get("modality", "text"), "probe_examples": len(probe.get("texts") or []),
            "probe_tokens": [len(t) for t in probe.get("tokens") or []][:64],
            "teacher": [probe.get("teacher_layers"), probe.get("teacher_heads")],
            "student": [probe.get("student_layers"), probe.get("student_heads")],
            "epochs": summary.get("epochs"), "test_size": summary.get("test_size")}
    wanted = PAGES if pages is None else [p for p in PAGES if p in pages]
    out: dict[str, dict] = {}

    def say(name, entry):
        out[name] = entry
        if log:
            log(f"  {name}: " + (f"n/a ({entry['na']})" if "na" in entry else
                                 f"{entry['median_s']:.3f} s, {entry['figures']} figures, {entry['json_bytes']:,} B"))

    for page in wanted:
        if page == "compression" and not compress.read_compression(run):
            say(page, _na("the run was never compressed: Compress on the page, or python -m distill_core compress"))
            continue
        if page == "sweep":
            sweeps = _sweeps_with(root, run_id)
            if not sweeps:
                say(page, _na("the run is not one of a sweep's seeds"))
                continue
            entry, _ = measure_page(page, root, run_id, repeats, state={rl.SWEEP_SELECTED: sweeps[0]})
            entry["sweep"] = sweeps[0]
            say(page, entry)
            continue
        if page == "generated" and not run.read_json("generated.json"):
            say(page, _na("the run trained on no generated data"))
            continue
        entry, _ = measure_page(page, root, run_id, repeats)
        say(page, entry)
        if page == "explorer":
            if image:
                say(EXPLORER_TEXT, _na("an image run: its explorer reads pictures, not texts"))
                say(EXPLORER_GRID, _na("an image run"))
                continue
            typed = {"source": "typed", "text": _long_text(probe)}
            entry, rec = measure_page(page, root, run_id, repeats, query=typed)
            if rec is not None and rec.live:
                tokens, maps, _ = rec.live[-1]
                entry["tokens"] = len(tokens)
                say(EXPLORER_TEXT, entry)
                t_maps = maps[TEACHER]                       # (layers, heads, T, T)

                def grid(t_maps=t_maps, tokens=tokens):
                    fig = fig_maps.head_grid(t_maps, tokens, f"teacher, all {t_maps.shape[0]} layers x "
                                                           f"{t_maps.shape[1]} heads")
                    return 1, len(fig.to_json())
                g = time_builds(grid, repeats)
                g.update(charts=["head_grid"], tokens=len(tokens))
                say(EXPLORER_GRID, g)
            else:
                say(EXPLORER_TEXT, entry if "na" in entry else _na("the page read no typed text"))
                say(EXPLORER_GRID, _na("no live attention of a typed text"))
        if page == "runs":
            say(REPORT, bench_report(run, repeats))
    info["pages"] = out
    return info


def bench_report(run, repeats: int) -> dict:
    """The Runs page's report download (report.build_report with the page's default heatmaps): its figures built
    again from the chart calls it makes, each with its JSON, as for the pages; the whole HTML page (figures written
    with fig.to_html, plotly.js inlined) is timed beside, untargeted."""
    from app import report
    try:
        heatmaps = report.default_heatmaps(run)
        with Recorder() as rec:
            html = report.build_report(run, heatmaps)
    except Exception as e:  # noqa: BLE001
        return _na(f"the report failed: {type(e).__name__}: {_short(str(e))}")
    rec.drawn = [fig for *_, fig in rec.calls]             # the report writes every figure it builds
    out = time_recorded(rec, repeats)
    whole = time_builds(lambda: (0, len(report.build_report(run, heatmaps).encode("utf-8"))), max(1, repeats // 2))
    out.update(whole_report_s=whole["median_s"], whole_report_bytes=whole["json_bytes"],
               figures_in_html=html.count('class="plotly-graph-div"'),
               note=f"built when the download is pressed; the whole HTML page takes {whole['median_s']:.2f} s")
    return out


def bench_pages(runs: dict[str, Path], repeats: int = 5, log=None, pages: Sequence[str] | None = None) -> dict:
    """For each labelled run folder and each page: median / min / max seconds of building the page's figures (with
    their JSON), the number of figures and their JSON bytes; {"na": why} where the run lacks what the page draws.
    `pages` limits the pages measured (default: PAGES, with the explorer's and the report's extra rows)."""
    import plotly
    import streamlit
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = {"target_s": TARGET_S, "repeats": repeats, "date": date,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                          "plotly": plotly.__version__, "streamlit": streamlit.__version__,
                          "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
              "runs": {}}
    for label, path in runs.items():
        if log:
            log(f"{label}: {path}")
        result["runs"][label] = bench_run(Path(path), repeats, log, pages)
    return result


# ---- reading the result --------------------------------------------------------------------------------
def _met(entry: dict) -> str:
    return "n/a" if "na" in entry else ("yes" if entry["median_s"] <= TARGET_S else "no")


def table_rows(result: dict) -> list[dict]:
    rows = []
    for label, r in result["runs"].items():
        for page, e in r["pages"].items():
            rows.append({"page": page, "run": label,
                         "median s": f"n/a ({e['na']})" if "na" in e else f"{e['median_s']:.3f}",
                         "figures": "" if "na" in e else str(e["figures"]),
                         "target": f"≤ {TARGET_S} s", "met": _met(e)})
    return rows


def summary_rows(result: dict) -> list[dict]:
    """One row per run: the slowest page and its time against the target (strings; met "yes" / "no")."""
    rows = []
    for label, r in result["runs"].items():
        timed = {p: e for p, e in r["pages"].items() if "na" not in e}
        measure = f"slowest page's figures, {label}"
        if not timed:
            rows.append({"measure": measure, "value": "n/a (no page drew figures)", "target": f"≤ {TARGET_S} s",
                         "met": "no"})
            continue
        page, e = max(timed.items(), key=lambda kv: kv[1]["median_s"])
        rows.append({"measure": measure, "value": f"{e['median_s']:.2f} s ({page})", "target": f"≤ {TARGET_S} s",
                     "met": "yes" if e["median_s"] <= TARGET_S else "no"})
    return rows


def format_table(result: dict) -> str:
    head = ["page", "run", "median s", "figures", "target", "met"]
    rows = table_rows(result)
    lines = ["| " + " | ".join(head[:4]) + f" | target ≤ {TARGET_S} s | met |", "|---|---|---:|---:|---|---|"]
    lines += [f"| {r['page']} | {r['run']} | {r['median s']} | {r['figures']} | ≤ {TARGET_S} s | {r['met']} |"
              for r in rows]
    lines += ["", "| measure | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {r['measure']} | {r['value']} | {r['target']} | {r['met']} |" for r in summary_rows(result)]
    return "\n".join(lines)


# ---- making the runs -------------------------------------------------------------------------------------
def run_configs(train_size: int = 300, epochs: int = 2) -> dict[str, dict]:
    """The command line's two sessions: the default variants, and six variants (the default two, logit KD alone,
    adaptive weights and temperature, adversarial, generated data); default shapes, test and probe sizes."""
    from distill_core import SessionConfig
    base = {"data": {"train_size": train_size}, "train": {"epochs": epochs, "min_steps": 0}}
    default = [{"name": v.name, "losses": dict(v.losses)} for v in SessionConfig().variants]
    six = {**base, "name": "figures-bench-6", "variants": default + EXTRA_VARIANTS,
           "transfer": {"source": "unused", "max_texts": train_size}}
    return {f"default ({len(default)} variants)": {**base, "name": "figures-bench-default"},
            f"{len(default) + len(EXTRA_VARIANTS)} variants": six}


def make_runs(root: Path, train_size: int = 300, epochs: int = 2, seeds: int = 1, compress_runs: bool = False,
              log=print) -> dict[str, Path]:
    """Run the sessions (through the engine) into the run store `root`; returns label -> run folder. With seeds > 1
    each is a sweep over seeds 0..seeds-1 (the run of seed 0 is the one measured); compress_runs compresses every
    variant of each measured run."""
    from distill_core import RunStore, SessionConfig, run_session
    from distill_core.sweep import SweepStore, run_sweep
    store = RunStore(root)
    out = {}
    for label, d in run_configs(train_size, epochs).items():
        cfg = SessionConfig.from_dict(d)
        t0 = time.perf_counter()
        if seeds > 1:
            sweeps = SweepStore(root)
            sweep_id = run_sweep(cfg, list(range(seeds)), store, sweeps, name=d["name"], report=lambda s: None)
            run_id = sweeps.open(sweep_id)["runs"]["0"]
        else:
            run_id = run_session(cfg, store)
        log(f"{label}: run {run_id} in {time.perf_counter() - t0:.0f} s")
        if compress_runs:
            from distill_core.compress import compress_run
            t0 = time.perf_counter()
            compress_run(store.open(run_id))
            log(f"{label}: compressed in {time.perf_counter() - t0:.0f} s")
        out[label] = store.root / run_id
    return out


def runs_in(folder: Path) -> dict[str, Path]:
    """A run folder, or every finished run of a run store, labelled by id, name and number of variants."""
    from distill_core import RunStore
    folder = Path(folder).resolve()
    if (folder / "status.json").is_file():
        return {folder.name: folder}
    store = RunStore(folder)
    out = {}
    for info in store.list():
        if info.status != "done":
            continue
        run = store.open(info.run_id)
        n = len((run.probe() or {}).get("variants") or [])
        out[f"{info.run_id}" + (f" · {info.name}" if info.name else "") + f" ({n} variants)"] = run.path
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs-dir", type=Path, help="a run store (every finished run in it) or one run folder; "
                                                  "default: make two runs in a temporary folder")
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=FOLDER",
                    help="a finished run folder and its label in the table (repeatable; instead of --runs-dir)")
    ap.add_argument("--repeats", type=int, default=5, help="timed builds of each page (after one warm-up)")
    ap.add_argument("--json", type=Path, help="write every number to this file")
    ap.add_argument("--keep", type=Path, help="make the runs in this folder and keep them (reuse with --runs-dir)")
    ap.add_argument("--train-size", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1, help="run each session as a sweep over this many seeds (the "
                                                         "Sweep page; slower)")
    ap.add_argument("--compress", action="store_true", help="compress every variant of the runs made (the "
                                                            "Compression page; about half a minute per variant)")
    args = ap.parse_args(argv)
    from streamlit import logger
    logger.set_log_level("error")          # the app's cached readers, imported outside a server, warn about it
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    tmp = None
    if args.run:
        runs = {}
        for item in args.run:
            label, sep, folder = item.rpartition("=")
            if not sep or not label:
                ap.error(f"--run {item}: give LABEL=FOLDER")
            runs[label] = Path(folder)
    elif args.runs_dir:
        runs = runs_in(args.runs_dir)
        if not runs:
            print(f"no finished run in {args.runs_dir}", file=sys.stderr)
            return 1
    else:
        if args.keep:
            folder = args.keep
        else:
            tmp = tempfile.TemporaryDirectory(prefix="figures-bench-")
            folder = Path(tmp.name)
        print(f"making the runs in {folder} (train_size {args.train_size}, {args.epochs} epochs, default shapes, "
              f"test and probe sizes)")
        runs = make_runs(folder, args.train_size, args.epochs, args.seeds, args.compress)
    try:
        result = bench_pages(runs, args.repeats, log=print)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print()
    load = result["machine"]["load_average"]
    print(f"# Figures per page: median of {args.repeats} builds, each with fig.to_json() "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {result['date']}"
          + (f", load average {load[0]:.2f} at the start" if load else "") + ")")
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
