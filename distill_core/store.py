"""The run store: one folder per run, written atomically, readable while a session is running.

Layout of `<root>/<run_id>/`:
    config.json        the resolved SessionConfig
    status.json        {"status": queued|running|done|failed|cancelled, "error", "pid", "host", "started", "ended"}
    progress.json      {"phase", "done", "total", "epoch", "epochs", "epoch_step", "epoch_steps", "elapsed_s",
                       "eta_s" (this phase), "session_eta_s" (the whole session; see SessionState), "started",
                       "phase_started", "updated" (wall-clock seconds: a reader ages the estimates to its own time)}
                       (throttled, while running; always at a phase's first and last step and an epoch's last)
    metrics.jsonl      one line per (epoch, variant): losses, validation accuracy, attention divergences;
                       the variant's name is under "student"
    train_steps.jsonl  the training loss within epochs: every k = max(1, steps per epoch // 25) steps (and at the
                       end of an epoch or a stop) one line per variant, {"step": global step (1-based), "epoch":
                       step / steps per epoch (e.g. 1.24), "student", "steps": how many steps it averages,
                       "losses": {component: mean over those steps, "total": the weighted sum}}
    probe.json         probe texts, labels, tokens per example, the variants, the layer mapping and head rule
    attention/teacher.npz              key "<i>" -> (L, H, T_i, T_i) float16 for probe example i
    attention/teacher_<k>.npz          the same for each further teacher of a session with several (teacher_2, ...)
    attention/<variant>_e<epoch>.npz   same layout, for each student variant (e.g. baseline, distilled)
    models/<variant>/  config.json + model.safetensors (the trained student variant: its last finished epoch)
    models/<variant>.best/  the same for its best epoch by validation accuracy, only where that is not the last
                       (a variant's name cannot hold a "."); Run.model_dir(variant, "best") finds either
    models/tokenizer/  the tokenizer the students read (a text run); an image run keeps models/preprocess/
                       (preprocess.json: size, channels, scaling, label names) instead: Run.reader_dir finds either
    predictions.json   {"split": "test", "labels", "predictions": {"teacher", <variant>...}}: each model's test answers
    summary.json       "variants" in session order, "reference" (the labels-only variant or null),
                       "accuracy": {"teacher", <variant>...}, "divergence": {"metric", "epochs", <variant>: [...]},
                       sizes, "latency_ms" and "latency_conditions" (what they were measured under:
                       distill_core/latency.py; absent in runs written before), "device", "majority_rate",
                       "warnings": [{"model", "kind", "message"}],
                       "paired": {<variant>: stats.paired_comparison against the reference},
                       "best_epoch": {<variant>: {"epoch", "val_accuracy", "test_accuracy" (null: not tested),
                       "final_epoch"}} (absent in runs written before it; Run.kept_weights reads it);
                       several teachers: "teachers" (each one's name, source, seed, part, folder, test accuracy),
                       "ensemble" (combine rule, test accuracy and answers, the variants that learn from it) and
                       "twins" (each variant learning from another teacher against the same recipe from the first)
    latency.json       written by "Measure again" (latency.measure_run), after the session: {"latency_ms",
                       "conditions", "weights"} of the teacher and students timed again; latency.run_latency reads
                       it before summary.json's
    compression.json   written by `compress` (distill_core/compress.py), after the session: each compressed
                       variant's versions (size, latency, test accuracy, attention JS), head importance, pruning curve
    compressed/<variant>/<version>/   each compressed version as a folder that load_compressed reads back (left out
                       of the run's zip: compress makes them again from the weights in models/)
    cancel             present when a cancel was requested
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RunStoreError

log = logging.getLogger(__name__)

WEIGHTS = ("final", "best")      # which weights of a student variant a run keeps (Run.model_dir)
BEST_SUFFIX = ".best"            # models/<variant>.best/: a variant's name cannot hold a "."
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
FINAL_STATUSES = ("done", "failed", "cancelled", "interrupted")


def default_runs_dir() -> Path:
    return Path(os.environ.get("ADS_RUNS_DIR", "runs")).resolve()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=False, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dataset_label(source: str) -> str:
    """A short name for a data source: a file's name, else the source itself (built-in or hub name)."""
    p = Path(source)
    return p.name if p.suffix and ("/" in source or "\\" in source) else source


@dataclass
class RunInfo:
    """One line of the run list."""
    run_id: str
    status: str
    started: str
    name: str
    dataset: str
    accuracy: dict
    epochs_done: int
    error: str = ""
    warnings: int = 0          # how many warnings its test results drew (summary.json "warnings")
    score: str = "accuracy"    # what its test "accuracy" measures (summary.json "metric": entity F1, chrF, ...)


class Run:
    """Reads and writes one run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name

    # ---- small files -------------------------------------------------------------------------
    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        if not p.exists():
            return default
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise RunStoreError(f"run {self.id}: {name} is damaged ({e})") from None

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def config(self) -> dict:
        cfg = self.read_json("config.json")
        if cfg is None:
            raise RunStoreError(f"run {self.id} has no config.json")
        return cfg

    def status(self) -> dict:
        """The run's status; a 'running' run whose process is gone reads as 'interrupted'."""
        st = self.read_json("status.json") or {"status": "unknown"}
        if st.get("status") in ("running", "queued") and st.get("host") == socket.gethostname():
            pid = st.get("pid")
            if isinstance(pid, int) and not _pid_alive(pid):
                st = dict(st, status="interrupted",
                          error=st.get("error") or "the process running this session stopped before it finished")
        return st

    def update_status(self, **fields) -> dict:
        st = self.read_json("status.json") or {}
        st.update(fields)
        self.write_json("status.json", st)
        return st

    def progress(self) -> dict:
        try:
            return self.read_json("progress.json") or {}
        except RunStoreError:
            return {}

    def summary(self) -> dict | None:
        return self.read_json("summary.json")

    def predictions(self) -> dict | None:
        """{"split": "test", "labels": [...], "predictions": {"teacher": [...], <variant>: [...]}} or None."""
        return self.read_json("predictions.json")

    def probe(self) -> dict | None:
        return self.read_json("probe.json")

    # ---- metrics -----------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        line = json.dumps(record, allow_nan=False, default=_json_default) + "\n"
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict]:
        """All complete metric lines; a truncated last line (crash mid-write) is skipped."""
        return self._read_jsonl("metrics.jsonl")

    def append_train_steps(self, records: list[dict]) -> None:
        """Append the records of one flush (one per variant) to train_steps.jsonl in one write; none: nothing."""
        if not records:
            return
        text = "".join(json.dumps(r, allow_nan=False, default=_json_default) + "\n" for r in records)
        with open(self.path / "train_steps.jsonl", "a") as f:
            f.write(text)

    def train_steps(self) -> list[dict]:
        """All complete lines of train_steps.jsonl (the loss within epochs); a truncated line is skipped."""
        return self._read_jsonl("train_steps.jsonl")

    def _read_jsonl(self, name: str) -> list[dict]:
        p = self.path / name
        if not p.exists():
            return []
        out = []
        for i, line in enumerate(p.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("run %s: %s line %d is damaged and was skipped", self.id, name, i + 1)
        return out

    def epochs_done(self) -> int:
        """Epochs every variant has finished (0: none yet)."""
        last: dict[str, int] = {}
        for m in self.metrics():
            s = m.get("student")
            if isinstance(s, str) and isinstance(m.get("epoch"), int):
                last[s] = max(last.get(s, 0), m["epoch"])
        return min(last.values(), default=0)

    # ---- attention arrays --------------------------------------------------------------------
    def write_attention(self, name: str, maps: list[np.ndarray]) -> None:
        """maps[i]: (L, H, T_i, T_i) attention of probe example i, stored as float16."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **{str(i): np.asarray(m, dtype=np.float16) for i, m in enumerate(maps)})
        atomic_write_bytes(self.path / "attention" / f"{name}.npz", buf.getvalue())

    def read_attention(self, name: str) -> list[np.ndarray]:
        p = self.path / "attention" / f"{name}.npz"
        if not p.exists():
            raise RunStoreError(f"run {self.id} has no attention maps named {name}")
        try:
            with np.load(p, allow_pickle=False) as z:
                return [z[str(i)].astype(np.float32) for i in range(len(z.files))]
        except Exception as e:  # zip/npz damage comes in many types
            raise RunStoreError(f"run {self.id}: attention/{name}.npz is damaged ({e})") from None

    def attention_epochs(self, student: str) -> list[int]:
        """Epochs whose attention maps were recorded for a variant (variant 'kd' is not 'kd_extra')."""
        d = self.path / "attention"
        if not d.exists():
            return []
        pattern = re.compile(re.escape(student) + r"_e(\d+)")
        return sorted(int(m.group(1)) for p in d.glob("*.npz") if (m := pattern.fullmatch(p.stem)))

    def weights_path(self, student: str, weights: str = "final") -> Path:
        """Where a variant's final or best weights are written, whether or not they are there."""
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
        return self.path / "models" / (student + (BEST_SUFFIX if weights == "best" else ""))

    def model_dir(self, student: str, weights: str = "final") -> Path:
        """The folder of a variant's final weights (its last finished epoch) or its best epoch's; "best" is the
        final folder where no separate best folder was written (the best epoch was the last one)."""
        best = self.weights_path(student, weights)
        if weights == "best" and not (best / "config.json").is_file():
            return self.weights_path(student)
        return best

    def kept_weights(self, student: str) -> dict[str, int]:
        """The epoch of each set of weights kept for a variant, e.g. {"final": 4, "best": 2}; {"final": 4, "best": 4}
        when the last epoch was the best. Runs written before best weights were kept give {"final": last epoch}
        only (their best epoch is not known); a variant without saved weights gives {}."""
        if not (self.weights_path(student) / "config.json").is_file():
            return {}
        try:
            summary = self.summary() or {}
        except RunStoreError:
            summary = {}
        entry = (summary.get("best_epoch") or {}).get(student)
        if isinstance(entry, dict) and isinstance(entry.get("final_epoch"), int):
            out, best = {"final": entry["final_epoch"]}, entry.get("epoch")
            # a best epoch other than the last counts only once its folder is there
            if isinstance(best, int) and (best == out["final"]
                                          or (self.weights_path(student, "best") / "config.json").is_file()):
                out["best"] = best
            return out
        last = summary.get("epochs_done")
        return {"final": last if isinstance(last, int) and last > 0 else self.epochs_done()}

    def reader_dir(self, saved_as: str) -> Path:
        """models/<saved_as>/: what the run keeps to read its inputs again, whether or not it is there. saved_as is
        its modality's (TextModality.saved_as "tokenizer", ImageModality.saved_as "preprocess")."""
        if not saved_as or Path(saved_as).name != saved_as or saved_as in (".", ".."):
            raise ValueError(f"{saved_as!r} is not the name of a folder under a run's models/")
        return self.path / "models" / saved_as

    def compressed_dir(self, variant: str) -> Path:
        """compressed/<variant>/: the compressed versions of a variant (distill_core/compress.py writes them)."""
        return self.path / "compressed" / variant

    def teacher_dir(self, path: str | None = None) -> Path:
        """The folder of the run's teacher: probe.json's teacher_path, or `path` (a further teacher's, as
        probe.json's "teachers" name it). A relative path is read from the run's folder, so a run moved together
        with its teacher still finds it. RunStoreError when the probe names no teacher."""
        if path is None:
            path = (self.probe() or {}).get("teacher_path")
        if not path:
            raise RunStoreError(f"run {self.id} does not say where its teacher is (probe.json has no teacher_path)")
        folder = Path(str(path))
        return folder if folder.is_absolute() else self.path / folder

    # ---- cancel ------------------------------------------------------------------------------
    def request_cancel(self) -> None:
        atomic_write_bytes(self.path / "cancel", now_iso().encode())

    def cancel_requested(self) -> bool:
        return (self.path / "cancel").exists()


class RunStore:
    """A folder of runs. Run ids never leave it."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root is not None else default_runs_dir()

    def _path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
            raise RunStoreError(f"{run_id!r} is not a valid run id (letters, digits, '-', '_' and '.' only)")
        p = (self.root / run_id).resolve()
        if p.parent != self.root.resolve():
            raise RunStoreError(f"{run_id!r} is not a valid run id")
        return p

    def new_run_id(self, name: str = "") -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]
        return f"{stamp}-{slug + '-' if slug else ''}{uuid.uuid4().hex[:6]}"

    def create(self, config: dict, run_id: str | None = None, status: str = "running") -> Run:
        """Create a run folder exclusively (two sessions never share one) and write its config."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = self.new_run_id(config.get("name", "")) if run_id is None else run_id
        path = self._path(run_id)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunStoreError(f"a run named {run_id} already exists; choose another id") from None
        run = Run(path)
        run.write_json("config.json", config)
        run.write_json("status.json", {"status": status, "pid": os.getpid(), "host": socket.gethostname(),
                                        "queued" if status == "queued" else "started": now_iso(), "ended": None,
                                        "error": None})
        return run

    def exists(self, run_id: str) -> bool:
        return self._path(run_id).is_dir()

    def open(self, run_id: str) -> Run:
        p = self._path(run_id)
        if not p.is_dir():
            raise RunStoreError(f"no run {run_id} in {self.root}; `python -m distill_core runs` lists them")
        return Run(p)

    def list(self) -> list[RunInfo]:
        """Newest first. A damaged folder is listed with status 'damaged' and a warning is logged."""
        if not self.root.is_dir():
            return []
        infos = []
        for p in sorted(self.root.iterdir(), reverse=True):
            if not p.is_dir() or p.is_symlink() or p.name.startswith(".") or not RUN_ID_RE.match(p.name):
                continue
            run = Run(p)
            try:
                cfg = run.config()
                st = run.status()
                summary = run.summary() or {}
                infos.append(RunInfo(
                    run_id=p.name, status=st.get("status", "unknown"), started=st.get("started") or "",
                    name=cfg.get("name", ""), dataset=dataset_label(str(cfg.get("data", {}).get("source", ""))),
                    accuracy=summary.get("accuracy") or {}, epochs_done=run.epochs_done(),
                    error=st.get("error") or "", warnings=len(summary.get("warnings") or []),
                    score=(summary.get("metric") or {}).get("short", "accuracy")))
            except Exception as e:  # noqa: BLE001 - any damage must not break the list
                log.warning("run folder %s is damaged and was marked so: %s", p.name, e)
                infos.append(RunInfo(run_id=p.name, status="damaged", started="", name="", dataset="",
                                     accuracy={}, epochs_done=0, error=str(e)))
        return infos

    def delete(self, run_id: str) -> None:
        run = self.open(run_id)
        try:
            running = run.status().get("status") in ("running", "queued")
        except RunStoreError:       # a damaged status file: the run is not running, and may be removed
            running = False
        if running:
            raise RunStoreError(f"run {run_id} is still running or queued; cancel it first")
        shutil.rmtree(run.path)

    def zip_bytes(self, run_id: str) -> bytes:
        run = self.open(run_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            root = run.path.resolve()
            for f in sorted(run.path.rglob("*")):
                # links could carry files from outside the run into the archive: skip them; compressed versions are
                # remade from models/ by `compress` (a default run's are 120 MB)
                if (f.is_file() and not f.is_symlink() and not f.name.endswith(".tmp")
                        and f.resolve().is_relative_to(root) and f.relative_to(run.path).parts[0] != "compressed"):
                    z.write(f, Path(run_id) / f.relative_to(run.path))
        return buf.getvalue()


def wait_for_status(run: Run, statuses=FINAL_STATUSES, timeout: float = 60.0) -> dict:
    """Poll a run until its status is one of `statuses` (used by tests and scripts)."""
    end = time.time() + timeout
    while time.time() < end:
        st = run.status()
        if st.get("status") in statuses:
            return st
        time.sleep(0.2)
    raise TimeoutError(f"run {run.id} still {run.status().get('status')} after {timeout}s")
