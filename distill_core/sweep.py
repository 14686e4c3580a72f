"""Sweeps: the same session run once per seed, and what the seeds say together.

One seed's difference between two variants can be luck; several seeds on the same test set tell a real gain
from noise. A sweep changes train.seed only (the students' seed): the teacher (teacher.seed) is fine-tuned once
and reused from the cache, and the data split (data.split_seed) stays the same, so every run answers the same
test questions and their answers can be pooled.

Layout, beside the runs of a run store (a leading underscore is never a run id, so `RunStore.list` skips it):
    <root>/_sweeps/<sweep_id>/sweep.json
        {"id", "name", "created", "config": the base SessionConfig as a dict, "seeds": [...],
         "runs": {"<seed>": run_id}, "summary": summarize_sweep(...) once the sweep has ended}

    run_sweep(config, seeds, run_store, sweep_store)      # in this process, one seed after another (CLI)
    start_sweep(config, seeds, run_store, sweep_store)    # queued in the background (app)
    summarize_sweep(run_store, record)                    # pure reading of the runs; pages call it live
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from . import stats
from .config import SessionConfig
from .errors import ConfigError, DistillError, RunStoreError
from .session import run_in_child, start_session
from .store import RUN_ID_RE, Run, RunStore, atomic_write_json, now_iso
from .vocab import ENSEMBLE, TEACHER, run_reference, run_variants

log = logging.getLogger(__name__)

SWEEPS_DIR = "_sweeps"
MAX_SEEDS = 20
SEEDS_HELP = "seeds must look like 0-4 or 0,1,2 (whole numbers of 0 or more)"
ACTIVE = ("queued", "running")
_RECORD_LOCK = threading.Lock()      # the app's queue thread and the page both update sweep.json


# ---- seeds --------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2,5" -> [0, 2, 5]; "3" -> [3]. Ranges and lists mix: "0-2,7"."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"{SEEDS_HELP}; got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"seed range {part} runs backwards; write {hi}-{lo}")
        if hi - lo >= MAX_SEEDS:
            raise ConfigError(f"a sweep runs at most {MAX_SEEDS} seeds; {part} names {hi - lo + 1}")
        seeds += range(lo, hi + 1)
    return check_seeds(seeds)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list, or a ConfigError saying what is wrong (none, too many, repeated, negative)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError(f"a sweep needs at least one seed; {SEEDS_HELP}")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"a sweep runs at most {MAX_SEEDS} seeds, not {len(seeds)}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"seed {dup[0]} is named twice; each seed runs once")
    if min(seeds) < 0:
        raise ConfigError(SEEDS_HELP)
    return seeds


# ---- the store ----------------------------------------------------------------------------------------
class SweepStore:
    """The sweeps of a run store, in `<root>/_sweeps/<sweep_id>/sweep.json`. Sweep ids never leave it."""

    def __init__(self, root: str | Path | None = None):
        self.runs = RunStore(root)
        self.root = self.runs.root
        self.dir = self.root / SWEEPS_DIR

    def folder(self, sweep_id: str) -> Path:
        """The sweep's folder (sweep.json, and sweep.html from the command line)."""
        if not isinstance(sweep_id, str) or not RUN_ID_RE.match(sweep_id) or ".." in sweep_id:
            raise RunStoreError(f"{sweep_id!r} is not a valid sweep id")
        return self.dir / sweep_id

    def _path(self, sweep_id: str) -> Path:
        return self.folder(sweep_id) / "sweep.json"

    def create(self, config: dict, seeds: Sequence[int], name: str = "", against: str | None = None) -> dict:
        """A new sweep record (no runs yet); returns it. `against`: a variant the others are also compared with."""
        seeds = check_seeds(seeds)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]
        sweep_id = f"{stamp}-{slug + '-' if slug else ''}{uuid.uuid4().hex[:6]}"
        record = {"id": sweep_id, "name": name, "created": now_iso(), "config": config, "seeds": seeds,
                  "runs": {}, **({"against": against} if against else {})}
        self._write(record)
        return record

    def open(self, sweep_id: str) -> dict:
        p = self._path(sweep_id)
        if not p.is_file():
            raise RunStoreError(f"no sweep {sweep_id} in {self.dir}; `python -m distill_core sweeps` lists them")
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise RunStoreError(f"sweep {sweep_id}: sweep.json is damaged ({e})") from None

    def list(self) -> list[dict]:
        """Newest first: id, name, created, seeds, runs and status (from the runs); a damaged record reads
        'damaged' with its error."""
        if not self.dir.is_dir():
            return []
        out = []
        for p in sorted(self.dir.iterdir(), reverse=True):
            if not p.is_dir() or not RUN_ID_RE.match(p.name):
                continue
            try:
                r = self.open(p.name)
                out.append({"id": r["id"], "name": r.get("name", ""), "created": r.get("created", ""),
                            "seeds": r["seeds"], "runs": r.get("runs", {}),
                            "status": sweep_status(run_statuses(self.runs, r))})
            except (DistillError, KeyError, TypeError) as e:
                log.warning("sweep folder %s is damaged: %s", p.name, e)
                out.append({"id": p.name, "name": "", "created": "", "seeds": [], "runs": {}, "status": "damaged",
                            "error": str(e)})
        return out

    def delete(self, sweep_id: str) -> None:
        """Delete the sweep record only: its runs stay in the run store (delete them one by one)."""
        p = self._path(sweep_id)
        if not p.is_file():
            raise RunStoreError(f"no sweep {sweep_id} in {self.dir}")
        shutil.rmtree(p.parent)

    def record_run(self, sweep_id: str, seed: int, run_id: str) -> None:
        self._update(sweep_id, lambda r: r["runs"].__setitem__(str(seed), run_id))

    def write_summary(self, sweep_id: str, summary: dict) -> None:
        self._update(sweep_id, lambda r: r.__setitem__("summary", summary))

    def _update(self, sweep_id: str, change: Callable[[dict], None]) -> None:
        with _RECORD_LOCK:
            record = self.open(sweep_id)
            change(record)
            self._write(record)

    def _write(self, record: dict) -> None:
        atomic_write_json(self._path(record["id"]), record)


# ---- running ------------------------------------------------------------------------------------------
def seed_config(config: SessionConfig, seed: int, name: str = "") -> SessionConfig:
    """The base config with the students' seed set, named after the sweep and the seed."""
    return config.with_overrides({"train.seed": int(seed), "name": f"{name or 'sweep'}-seed{seed}"})


def sweep_devices(config: SessionConfig) -> list[str]:
    """The GPUs a sweep runs its seeds on side by side, one seed per GPU at a time: every CUDA device when the machine
    has several and train.device is auto or cuda; else none (the seeds run one after another)."""
    import torch
    if config.train.device not in ("auto", "cuda") or not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    return [f"cuda:{i}" for i in range(n)] if n > 1 else []


def run_sweep(config: SessionConfig, seeds: Sequence[int], run_store: RunStore, sweep_store: SweepStore,
              name: str = "", progress: bool = False, report: Callable[[str], None] | None = None,
              against: str | None = None, run_one: Callable[[SessionConfig, Run], dict] | None = None,
              devices: Sequence[str] | None = None) -> str:
    """Run one session per seed, each in a child process; returns the sweep id. On a machine with several GPUs
    (`devices`, default sweep_devices) the seeds run side by side, seed k on GPU k mod n, each GPU's seeds one after
    another; otherwise one after another.

    Each run id enters sweep.json as soon as the run exists; a seed that fails (a crash included) is recorded in
    its run and the sweep goes on. At the end sweep.json gains the summary. `report` receives one line per seed
    (default: log); `progress` draws progress bars (one seed at a time only). `run_one(config, run) -> its final
    status` runs one seed's session (default: session.run_in_child)."""
    report = report or log.info
    seeds = check_seeds(seeds)
    devices = list(sweep_devices(config) if devices is None else devices)
    side_by_side = len(devices) > 1 and len(seeds) > 1
    run_one = run_one or (lambda cfg, run: run_in_child(run, progress=progress and not side_by_side))
    if against is not None and against not in config.variant_names:
        raise ConfigError(f"--against {against}: no variant of that name; this config's variants are "
                          f"{', '.join(config.variant_names)}")
    record = sweep_store.create(config.to_dict(), seeds, name, against=against)
    jobs = []
    for k, seed in enumerate(seeds, start=1):
        cfg = seed_config(config, seed, name)
        if side_by_side:
            cfg = cfg.with_overrides({"train.device": devices[(k - 1) % len(devices)]})
        run = run_store.create(cfg.to_dict())
        sweep_store.record_run(record["id"], seed, run.id)
        jobs.append((k, seed, cfg, run))

    def one(k, seed, cfg, run) -> None:
        where = f" on {cfg.train.device}" if side_by_side else ""
        report(f"seed {seed} ({k}/{len(seeds)}): run {run.id}{where}")
        ended = run_one(cfg, run)
        if ended.get("status") == "failed":       # recorded in the run's status; the other seeds still run
            report(f"seed {seed}: failed ({ended.get('error')})")
            return
        report(f"seed {seed}: {seed_line(run_store.open(run.id).summary() or {})}")

    if side_by_side:
        lanes = [[j for j in jobs if j[2].train.device == d] for d in devices]
        threads = [threading.Thread(target=lambda lane=lane: [one(*j) for j in lane], daemon=True) for lane in lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for job in jobs:
            one(*job)
    summary = summarize_sweep(run_store, sweep_store.open(record["id"]))
    sweep_store.write_summary(record["id"], summary)
    return record["id"]


def start_sweep(config: SessionConfig, seeds: Sequence[int], run_store: RunStore, sweep_store: SweepStore,
                name: str = "", start: Callable[..., str] | None = None) -> str:
    """Queue one session per seed (they run one at a time in the background); returns the sweep id at once.

    `start(config, run_store) -> run id` queues one session (default: session.start_session)."""
    start = start or start_session
    seeds = check_seeds(seeds)
    record = sweep_store.create(config.to_dict(), seeds, name)
    for seed in seeds:
        run_id = start(seed_config(config, seed, name), run_store)
        sweep_store.record_run(record["id"], seed, run_id)
    return record["id"]


def start_seeds(config: SessionConfig, seeds_text: str, run_store: RunStore,
                start: Callable[..., str] | None = None) -> tuple[str, str | None]:
    """What the app's Start button does with its Seeds field: empty, one session as configured; one seed, one
    session with that seed; several, a sweep. Returns (the first run id, the sweep id or None)."""
    start = start or start_session
    seeds = parse_seeds(seeds_text) if str(seeds_text).strip() else []
    if len(seeds) <= 1:
        return start(config.with_overrides({"train.seed": seeds[0]}) if seeds else config, run_store), None
    sweeps = SweepStore(run_store.root)
    sweep_id = start_sweep(config, seeds, run_store, sweeps, name=config.name, start=start)
    return sweeps.open(sweep_id)["runs"][str(seeds[0])], sweep_id


def seed_line(summary: dict) -> str:
    """One run's status and test accuracies in a line: "done: teacher 77.2%, baseline 71.9%, ..."."""
    acc = summary.get("accuracy") or {}
    shown = ", ".join(f"{m} {_pct(a)}" for m, a in acc.items() if a is not None)
    return f"{summary.get('status', '?')}" + (f": {shown}" if shown else "")


# ---- reading a sweep ----------------------------------------------------------------------------------
def run_statuses(run_store: RunStore, record: dict) -> dict[int, str]:
    """Seed -> its run's status; 'pending' before the run exists, 'missing' when its folder is gone."""
    out = {}
    for seed in record["seeds"]:
        run_id = record.get("runs", {}).get(str(seed))
        if run_id is None:
            out[seed] = "pending"
            continue
        try:
            out[seed] = run_store.open(run_id).status().get("status", "unknown")
        except RunStoreError:
            out[seed] = "missing"
    return out


def sweep_status(statuses: dict[int, str]) -> str:
    """queued (nothing started), running, done (every seed), partial (ended; some seeds did not finish) or
    failed (ended; no seed finished). A seed whose run does not exist yet ('pending') beside no active run
    means the sweep stopped before it (e.g. an interrupted command line)."""
    values = list(statuses.values())
    if any(s in ACTIVE for s in values) or (values and all(s == "pending" for s in values)):
        started = any(s not in ("queued", "pending") for s in values)
        return "running" if started else "queued"
    if values and all(s == "done" for s in values):
        return "done"
    return "partial" if "done" in values else "failed"


def summarize_sweep(run_store: RunStore, record: dict, pool: bool = True, against: str | None = None) -> dict:
    """What the finished ("done") runs of a sweep say together, with the statistics of distill_core.stats.

    Keys: status, seeds, seeds_done, seed_status, runs, variants, reference, test_size, teacher {accuracy,
    mean, lo, hi}, variants_stats {name: accuracy, acc_mean/lo/hi, js, js_mean/lo/hi}, paired {variant:
    stats.pooled_comparison over the seeds, per test example (when `pool` and every run has the same test
    labels), diff_mean/lo/hi
    (t interval of the per-seed differences), per_seed_diff, js_below_reference_every_seed, gap_closed},
    warnings (each prefixed with its seed) and problems (why something could not be computed).

    `against` (default: the record's "against", set by `sweep --against`) names a variant every other one is also
    compared with in the same way (paired_against): e.g. plain KD, to ask whether a strategy added to it helps.
    variants_stats also holds, where the runs have them, the mean training seconds ("train_s") and the mean
    accuracy under attack at each epsilon of robustness.json ("robust": {"epsilons", "mean"}; the teacher's is in
    "teacher")."""
    statuses = run_statuses(run_store, record)
    done = _done_runs(run_store, record, statuses)
    first = done[0][1] if done else {}
    variants = run_variants(first)
    reference = run_reference(first, variants)
    out = {"status": sweep_status(statuses), "seeds": list(record["seeds"]), "seeds_done": [s for s, *_ in done],
           "seed_status": {str(s): v for s, v in statuses.items()}, "runs": dict(record.get("runs", {})),
           "variants": variants, "reference": reference, "test_size": first.get("test_size"),
           "metric": first.get("metric") or {"name": "accuracy", "short": "accuracy"},
           "teacher": {}, "variants_stats": {}, "paired": {}, "warnings": [], "problems": []}
    if not done:
        return out
    problems = out["problems"]
    if any(run_variants(s) != variants for _, s, _ in done):
        problems.append("the runs trained different variants; only the first run's variants are shown")
    if len({s.get("test_size") for _, s, _ in done}) > 1:
        problems.append("the runs were tested on different numbers of examples")
    acc = {m: [s.get("accuracy", {}).get(m) for _, s, _ in done] for m in (TEACHER, *variants)}
    _accuracy_stats(out, done, acc, variants)
    against = against or record.get("against")
    if against is not None and against not in variants:
        problems.append(f"--against {against}: the runs have no variant of that name ({', '.join(variants)})")
        against = None
    correct = _correct_answers(done, problems) if pool and (reference or against) else None
    js = {v: out["variants_stats"][v]["js"] for v in variants}
    for v in variants:
        if reference and v != reference:
            out["paired"][v] = _paired(v, reference, acc, js, correct)
    if against:
        out["against"] = against
        out["paired_against"] = {v: {**_paired(v, against, acc, js, correct), "gap_closed": None}
                                 for v in variants if v != against}
    out["warnings"] = [{**w, "seed": seed, "message": f"seed {seed}: {w.get('message', '')}"}
                       for seed, s, _ in done for w in s.get("warnings") or []]
    return out


def _accuracy_stats(out: dict, done: list, acc: dict[str, list], variants: list[str]) -> None:
    """The teacher's, each further teacher's and each variant's accuracy per seed with their t intervals, the
    variants' final attention JS, training seconds and accuracy under attack (summarize_sweep's keys)."""
    js = {v: [_final_js(s, v) for _, s, _ in done] for v in variants}
    out["teacher"] = {"accuracy": acc[TEACHER], **_interval(acc[TEACHER], ("mean", "lo", "hi"))}
    further = {}                         # several teachers: each further one and their ensemble, per seed
    for _, s, _ in done:
        for t in (s.get("teachers") or [])[1:]:
            further.setdefault(t["name"], []).append(t.get("accuracy"))
        if (s.get("ensemble") or {}).get("accuracy") is not None:
            further.setdefault(ENSEMBLE, []).append(s["ensemble"]["accuracy"])
    if further:
        out["teachers"] = {m: {"accuracy": a, **_interval(a, ("mean", "lo", "hi"))} for m, a in further.items()}
    out["variants_stats"] = {v: {"accuracy": acc[v], **_interval(acc[v], ("acc_mean", "acc_lo", "acc_hi")),
                                 "js": js[v], **_interval(js[v], ("js_mean", "js_lo", "js_hi")),
                                 "train_s": _mean([_train_seconds(run, v) for _, _, run in done])}
                             for v in variants}
    for m, curve in _robustness(done).items():
        (out["teacher"] if m == TEACHER else out["variants_stats"].setdefault(m, {}))["robust"] = curve
    for v in variants:                   # several kinds of attention (translation): each kind's final JS, per seed
        kinds = [_final_kinds_js(run, v) for _, _, run in done]
        if any(kinds):
            names = list(dict.fromkeys(k for d in kinds for k in d))
            out["variants_stats"][v]["js_kinds"] = {k: _interval([d.get(k) for d in kinds],
                                                                 ("js_mean", "js_lo", "js_hi")) for k in names}


def _final_kinds_js(run: Run, variant: str) -> dict[str, float]:
    """Each kind of attention's mean JS at a variant's last recorded epoch (metrics.jsonl attention_kinds)."""
    last = [r for r in run.metrics() if r.get("student") == variant and r.get("attention_kinds")]
    if not last:
        return {}
    return {k: float(np.mean(a["js"])) for k, a in last[-1]["attention_kinds"].items() if a and a.get("js")}


def _done_runs(run_store: RunStore, record: dict, statuses: dict[int, str]) -> list[tuple[int, dict, Run]]:
    """(seed, summary, run) of each finished run, in seed order."""
    out = []
    for seed, st in statuses.items():
        if st != "done":
            continue
        try:
            run = run_store.open(record["runs"][str(seed)])
            summary = run.summary()
        except RunStoreError as e:
            log.warning("sweep %s: %s", record.get("id"), e)
            continue
        if summary:
            out.append((seed, summary, run))
    return out


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _train_seconds(run: Run, variant: str) -> float | None:
    """Seconds the variant spent in its training steps over the whole run (metrics.jsonl timing)."""
    times = [r.get("timing", {}).get("train_s") for r in run.metrics() if r.get("student") == variant]
    return float(sum(t for t in times if t is not None)) if any(t is not None for t in times) else None


def _robustness(done) -> dict[str, dict]:
    """Model -> {"epsilons", "mean"}: accuracy under attack at each epsilon, averaged over the runs that measured
    it with the same epsilons (robustness.json)."""
    records = [r for r in (run.read_json("robustness.json") for _, _, run in done) if r]
    if not records:
        return {}
    eps = records[0]["epsilons"]
    same = [r for r in records if r["epsilons"] == eps]
    models = set.intersection(*(set(r["accuracy"]) for r in same))
    return {m: {"epsilons": eps, "runs": len(same),
                "mean": [float(np.mean([r["accuracy"][m][k] for r in same])) for k in range(len(eps))]}
            for m in models}


def _final_js(summary: dict, variant: str) -> float | None:
    values = (summary.get("divergence") or {}).get(variant) or []
    return values[-1] if values else None


def _interval(values: list, keys: tuple[str, str, str]) -> dict:
    """stats.mean_interval of the values that exist, under the given names (all None when there are none)."""
    known = [v for v in values if v is not None]
    m, lo, hi = stats.mean_interval(known) if known else (None, None, None)
    return dict(zip(keys, (m, lo, hi)))


def _correct_answers(done, problems: list[str]) -> dict | None:
    """Model -> one (N,) bool array of right answers per finished run, or for a score made of per-example units
    ("units", statistic, one units array per run); None (and a problem) when the runs cannot be pooled: a run
    without predictions.json, or test labels that differ between runs."""
    preds = []
    for seed, _, run in done:
        try:
            p = run.predictions()
        except RunStoreError as e:
            log.warning("%s", e)
            p = None
        if not p:
            problems.append(f"the run of seed {seed} has no test answers (predictions.json): pooled comparison "
                            f"skipped")
            return None
        preds.append(p)
    if preds and all(p.get("units") for p in preds):          # a score made of per-example units (F1, chrF)
        if any(p["labels"] != preds[0]["labels"] for p in preds):
            problems.append("the runs were tested on different examples (are data.split_seed and data.test_size "
                            "the same?): pooled comparison skipped")
            return None
        return {m: ("units", preds[0].get("statistic"), [np.asarray(p["units"][m]) for p in preds])
                for m in preds[0]["units"] if all(m in p["units"] for p in preds)}
    labels = [np.asarray(p["labels"]) for p in preds]
    if any(len(y) != len(labels[0]) or not np.array_equal(y, labels[0]) for y in labels):
        problems.append("the runs were tested on different examples (are data.split_seed and data.test_size the "
                        "same?): pooled comparison skipped")
        return None
    y = labels[0]
    return {m: [np.asarray(p["predictions"][m]) == y for p in preds]
            for m in preds[0]["predictions"] if all(m in p["predictions"] for p in preds)}


def _paired(variant: str, ref: str, acc: dict, js: dict, correct: dict | None) -> dict:
    """A variant against the reference over the seeds: pooled test (when possible), per-seed differences,
    whether its attention was closer to the teacher's on every seed, and the share of the teacher gap closed."""
    out: dict = {}
    if correct is not None and variant in correct and ref in correct:
        if isinstance(correct[ref], tuple):         # ("units", statistic, [per seed]): entity F1, sentence chrF
            _, statistic, ref_units = correct[ref]
            out.update(stats.pooled_units(statistic, zip(ref_units, correct[variant][2])))
        else:
            out.update(stats.pooled_comparison(zip(correct[ref], correct[variant])))
    diffs = [None if a is None or r is None else a - r for a, r in zip(acc[variant], acc[ref])]
    out.update(_interval(diffs, ("diff_mean", "diff_lo", "diff_hi")), per_seed_diff=diffs)
    js_pairs = list(zip(js[variant], js[ref]))
    out["js_below_reference_every_seed"] = bool(js_pairs) and all(
        a is not None and r is not None and a < r for a, r in js_pairs)
    means = {m: _interval(acc[m], ("m", "lo", "hi"))["m"] for m in (TEACHER, ref, variant)}
    gap = None if None in means.values() else means[TEACHER] - means[ref]
    out["gap_closed"] = (means[variant] - means[ref]) / gap if gap is not None and gap > 0 else None
    return out


# ---- text for the terminal ----------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _with_interval(m, lo, hi, fmt: Callable[[float], str]) -> str:
    if m is None:
        return "-"
    return fmt(m) + ("" if lo is None else f" [{fmt(lo)}, {fmt(hi)}]")


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def format_summary(summary: dict) -> str:
    """The sweep as a plain-text table: per model the accuracy and final attention JS (mean and 95% interval
    across seeds), then each variant against the reference."""
    done, seeds = summary.get("seeds_done", []), summary.get("seeds", [])
    lines = [f"sweep: {summary.get('status')}, {len(done)} of {len(seeds)} seeds done "
             f"({', '.join(map(str, done)) or 'none'}); test n = {summary.get('test_size') or '-'} per seed"]
    variants, ref = summary.get("variants", []), summary.get("reference")
    if done:
        width = max([10, *(len(v) + 6 for v in variants)])
        pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
        head = f"test {summary.get('metric', {}).get('name', 'accuracy')} % [95% interval]"
        lines.append(f"  {'model':<{width}}  {head:<30}  final attention JS [95% interval]")
        t = summary.get("teacher") or {}
        lines.append(f"  {TEACHER:<{width}}  {_with_interval(t.get('mean'), t.get('lo'), t.get('hi'), pct)}")
        for m, t in (summary.get("teachers") or {}).items():
            lines.append(f"  {m:<{width}}  {_with_interval(t.get('mean'), t.get('lo'), t.get('hi'), pct)}")
        for v in variants:
            s = summary["variants_stats"].get(v, {})
            js = _with_interval(s.get("js_mean"), s.get("js_lo"), s.get("js_hi"), lambda x: f"{x:.4f}")
            acc = _with_interval(s.get("acc_mean"), s.get("acc_lo"), s.get("acc_hi"), pct)
            lines.append(f"  {v + (' (ref)' if v == ref else ''):<{width}}  {acc:<30}  {js}")
            if s.get("js_kinds"):
                lines.append(f"  {'':<{width}}  final JS per kind: " + ", ".join(
                    f"{k} {_with_interval(x.get('js_mean'), x.get('js_lo'), x.get('js_hi'), lambda y: f'{y:.4f}')}"
                    for k, x in s["js_kinds"].items()))
    for v, p in (summary.get("paired") or {}).items():
        lines.append(f"  {v} vs {ref}: " + comparison_text(p, len(done)))
    for v, p in (summary.get("paired_against") or {}).items():
        lines.append(f"  {v} vs {summary['against']}: " + comparison_text(p, len(done)))
    robust = {m: s.get("robust") for m, s in [(TEACHER, summary.get("teacher") or {}),
                                               *(summary.get("variants_stats") or {}).items()] if s.get("robust")}
    if robust:
        eps = next(iter(robust.values()))["epsilons"]
        lines.append("  accuracy % under attack (PGD on word embeddings), epsilon " + " / ".join(map(str, eps)) + ":")
        lines += [f"    {m}: " + " / ".join(f"{100 * a:.1f}" for a in r["mean"]) for m, r in robust.items()]
    times = {v: s.get("train_s") for v, s in (summary.get("variants_stats") or {}).items() if s.get("train_s")}
    if times:
        lines.append("  training seconds per run (mean over seeds): " +
                     ", ".join(f"{v} {t:.0f}" for v, t in times.items()))
    lines += [f"  problem: {p}" for p in summary.get("problems", [])]
    lines += [f"  warning: {w['message']}" for w in summary.get("warnings", [])]
    return "\n".join(lines)


def comparison_text(p: dict, seeds: int) -> str:
    """One variant against the reference, in a line: mean difference across seeds, pooled test, gap closed."""
    parts = [f"{_with_interval(p.get('diff_mean'), p.get('diff_lo'), p.get('diff_hi'), _points)} points "
             f"(mean over {seeds} seed{'s' if seeds != 1 else ''}, t interval)"]
    if "p" in p:
        units = bool(p.get("statistic"))
        test = "randomisation" if units else "sign-flip"
        counts = "examples scored higher" if units else "discordant answers"
        parts.append(f"pooled per test example (n = {p['n']}, each answered by {seeds} seed"
                     f"{'s' if seeds != 1 else ''}): {_points(p['diff'])} [{_points(p['lo'])}, {_points(p['hi'])}], "
                     f"{test} {stats.p_text(p['p'])} ({p['variant_only']} vs {p['ref_only']} {counts}) "
                     f"-> {p['verdict']}")
    if p.get("gap_closed") is not None:
        parts.append(f"gap to the teacher closed {p['gap_closed']:.0%}")
    return "; ".join(parts)
