"""A distillation session: teacher -> distilled student, beside a baseline student trained on labels only.

    run_id = run_session(SessionConfig(), RunStore("runs"), callbacks=[...])

Both students start from the same weights and see the same batches; every epoch both are evaluated on
the validation split and their attention is recorded on the fixed probe set, so every run answers
"did distillation help, and did the student's attention move towards the teacher's?".
"""
from __future__ import annotations

import copy
import logging
import math
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import mapping
from .batching import collate, encode, make_batches
from .capture import AttentionCapture
from .config import ATTENTION_LOSSES, SessionConfig
from .data import load_splits
from .errors import DistillError, NonFiniteLossError
from .evaluate import autocast_for, evaluate, measure_latency
from .losses import LossInputs, combined_loss
from .metrics import attention_metrics
from .models import (build_student, check_attention, count_parameters, load_tokenizer, num_layers_heads,
                     pick_device, set_attention_backend)
from .store import Run, RunStore, now_iso
from .teacher import compute_teacher_outputs, prepare_teacher, teacher_evaluation, teacher_size_bytes

log = logging.getLogger(__name__)
_INIT_LOCK = threading.Lock()   # global RNG seeding + model construction, for sessions sharing a process


# ---- callbacks ---------------------------------------------------------------------------------------
@dataclass
class SessionState:
    run_id: str
    phase: str = "starting"      # load data, prepare teacher, teacher outputs, train, evaluate, done
    done: int = 0                # steps done in this phase
    total: int = 0               # steps in this phase
    epoch: int = 0               # epochs finished
    epochs: int = 0
    started: float = field(default_factory=time.time)
    phase_started: float = field(default_factory=time.time)

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.started

    @property
    def eta_s(self) -> float | None:
        """Seconds left in this phase at the current rate."""
        if self.done <= 0 or self.total <= 0:
            return None
        rate = (time.time() - self.phase_started) / self.done
        return rate * (self.total - self.done)

    def as_dict(self) -> dict:
        return {"phase": self.phase, "done": self.done, "total": self.total, "epoch": self.epoch,
                "epochs": self.epochs, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "updated": time.time()}


@dataclass
class SessionControl:
    should_stop: bool = False
    reason: str = ""             # "cancelled" or "time budget"

    def stop(self, reason: str) -> None:
        self.should_stop, self.reason = True, reason


class SessionCallback:
    """Base class of no-op events; override what you need. Set control.stop("cancelled") to cancel."""

    def on_session_begin(self, state: SessionState, control: SessionControl) -> None: ...
    def on_step(self, state: SessionState, control: SessionControl) -> None: ...
    def on_epoch_end(self, state: SessionState, control: SessionControl, records: list[dict]) -> None: ...
    def on_session_end(self, state: SessionState, control: SessionControl, summary: dict) -> None: ...


class StoreProgress(SessionCallback):
    """Writes progress.json (at most every `every_s` seconds) and honours a cancel file in the run folder."""

    def __init__(self, run: Run, every_s: float = 0.5):
        self.run, self.every_s, self._last = run, every_s, 0.0

    def on_step(self, state, control):
        if self.run.cancel_requested():
            control.stop("cancelled")
        now = time.time()
        if now - self._last >= self.every_s or state.done == state.total:
            self._last = now
            self.run.write_json("progress.json", state.as_dict())

    on_session_begin = on_step

    def on_epoch_end(self, state, control, records):
        self.run.write_json("progress.json", state.as_dict())

    def on_session_end(self, state, control, summary):
        self.run.write_json("progress.json", state.as_dict())


class _Stop(Exception):
    """Raised inside a phase when a callback asked to stop."""


# ---- the session -------------------------------------------------------------------------------------
@dataclass
class _Student:
    name: str                 # "distilled" or "baseline"
    model: nn.Module
    weights: dict             # loss name -> weight
    projections: nn.ModuleList | None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object = None
    best_state: dict | None = None   # weights after the last finished epoch
    loss_sums: dict = field(default_factory=dict)
    loss_count: int = 0
    train_s: float = 0.0      # seconds spent in this student's optimisation steps this epoch

    def snapshot(self) -> None:
        """Keep a CPU copy of the weights: a stop inside the next epoch goes back to them."""
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}


def _lr_lambda(schedule: str, total: int, warmup_ratio: float):
    warm = int(warmup_ratio * total)

    def f(step):
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)
    return f


class Session:
    def __init__(self, config: SessionConfig, run: Run, callbacks=()):
        self.config, self.run = config, run
        self.callbacks = [StoreProgress(run), *callbacks]
        self.state = SessionState(run_id=run.id, epochs=config.train.epochs)
        self.control = SessionControl()
        self.records: list[dict] = []

    # -- events
    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self.state, self.control, *args)

    def _progress(self, phase: str, done: int, total: int) -> None:
        if phase != self.state.phase:
            self.state.phase, self.state.phase_started = phase, time.time()
        self.state.done, self.state.total = done, total
        self._emit("on_step")
        budget = self.config.train.time_budget_s
        if budget and self.state.elapsed_s > budget and phase == "train" and not self.control.should_stop:
            self.control.stop("time budget")
        if self.control.should_stop and self.control.reason == "cancelled" and phase != "train":
            raise _Stop()       # the training loop stops itself between steps

    # -- main
    def execute(self) -> dict:
        cfg = self.config
        self._emit("on_session_begin")
        self.device = pick_device(cfg.train.device)
        self._progress("load data", 0, 1)
        splits = load_splits(cfg.data)
        self.splits = splits
        tokenizer = self.tokenizer = load_tokenizer(cfg.teacher.source)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad = pad
        ml = cfg.data.max_length
        train_ids, n_trunc = encode(tokenizer, splits.train_texts, ml)
        val_ids, _ = encode(tokenizer, splits.val_texts, ml)
        test_ids, _ = encode(tokenizer, splits.test_texts, ml)
        notices = list(splits.notices)
        if n_trunc:
            notices.append(f"{n_trunc} training text{'s were' if n_trunc != 1 else ' was'} longer than {ml} tokens "
                           f"and {'were' if n_trunc != 1 else 'was'} truncated")
        self._progress("load data", 1, 1)

        teacher = prepare_teacher(cfg, splits, train_ids, self.device, self._progress, tokenizer=tokenizer)
        self.teacher = teacher.model
        t_layers, t_heads = num_layers_heads(self.teacher)

        # students: same initial weights, same batches
        obj = cfg.objectives
        with _INIT_LOCK:
            torch.manual_seed(cfg.train.seed)
            init_layers = cfg.student.init_layers
            if init_layers is None and not cfg.student.source:
                init_layers = mapping.layer_map(obj.layer_map, t_layers, cfg.student.layers)
            first = build_student(cfg.student, self.teacher, splits.num_labels, init_layers)
        s_layers, s_heads = num_layers_heads(first)
        check_attention(first, tokenizer, "the student")   # its tokenizer was checked in models.preflight
        self.pairs_teacher = mapping.layer_map(obj.layer_map, t_layers, s_layers)
        self.pairs = [(t, s) for s, t in enumerate(self.pairs_teacher)]
        self.head_rule = mapping.resolve_head_rule(obj.head_rule, t_heads, s_heads)
        self.s_heads = s_heads
        need_att = any(obj.weight(n) > 0 for n in ATTENTION_LOSSES)
        need_hid = obj.weight("hidden_mse") > 0

        students = []
        distilled_proj = None
        if need_hid:
            ds, dt = first.config.hidden_size, self.teacher.config.hidden_size
            with _INIT_LOCK:
                torch.manual_seed(cfg.train.seed + 1)
                distilled_proj = nn.ModuleList(
                    [nn.Linear(ds, dt) if ds != dt else nn.Identity() for _ in range(s_layers)])
        students.append(_Student("distilled", first, obj.losses, distilled_proj))
        if cfg.train.baseline:
            students.append(_Student("baseline", copy.deepcopy(first), {"ce": 1.0}, None))
        for st in students:
            st.model.to(self.device)
            if st.projections is not None:
                st.projections.to(self.device)
        self.students = students

        # teacher outputs once (the inputs repeat every epoch)
        tout = None
        if obj.needs_teacher:
            tout = compute_teacher_outputs(
                self.teacher, train_ids, pad, self.device, self.pairs_teacher, self.head_rule, s_heads,
                need_att, need_hid, batch_size=max(cfg.train.batch_size, 64),
                mixed_precision=cfg.train.mixed_precision, progress=self._progress)
        self.teacher_outputs = tout

        # the probe set, and epoch 0 (before training)
        self.probe_ids = [val_ids[i] for i in splits.probe_indices]
        teacher_probe = self._probe_maps(self.teacher)
        self.run.write_attention("teacher", teacher_probe)
        teacher_val_acc, teacher_val_loss = teacher_evaluation(
            teacher, f"val:{self.device.type}",
            lambda: evaluate(self.teacher, val_ids, splits.val_labels, pad, self.device,
                             mixed_precision=cfg.train.mixed_precision))
        self.teacher_probe = teacher_probe
        self.run.write_json("probe.json", {
            "texts": [splits.val_texts[i] for i in splits.probe_indices],
            "labels": [splits.val_labels[i] for i in splits.probe_indices],
            "label_names": splits.label_names,
            "tokens": [tokenizer.convert_ids_to_tokens(x) for x in self.probe_ids],
            "pairs": self.pairs, "head_rule": self.head_rule,
            "teacher_layers": t_layers, "teacher_heads": t_heads,
            "student_layers": s_layers, "student_heads": s_heads,
            "teacher_path": teacher.path, "teacher_val_accuracy": teacher_val_acc,
            "teacher_val_loss": teacher_val_loss, "notices": notices,
        })
        for st in students:
            st.snapshot()
        self._record_epoch(0, val_ids, {st.name: {} for st in students})

        # training
        steps_per_epoch = math.ceil(len(train_ids) / cfg.train.batch_size)
        total_steps = steps_per_epoch * cfg.train.epochs
        for st in students:
            params = list(st.model.parameters()) + (list(st.projections.parameters()) if st.projections else [])
            st.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
            st.scheduler = torch.optim.lr_scheduler.LambdaLR(
                st.optimizer, _lr_lambda(cfg.train.schedule, total_steps, cfg.train.warmup_ratio))
        y = torch.tensor(splits.train_labels, dtype=torch.long)
        lengths = [len(x) for x in train_ids]
        stopped = ""
        step = 0
        for epoch in range(1, cfg.train.epochs + 1):
            for st in students:
                st.loss_sums, st.loss_count, st.train_s = {}, 0, 0.0
            try:
                for index in make_batches(lengths, cfg.train.batch_size, seed=cfg.train.seed * 1000 + epoch,
                                          buckets=cfg.train.length_buckets):
                    self._train_step(index, train_ids, y, tout, epoch, step, need_att, need_hid)
                    step += 1
                    self._progress("train", step, total_steps)
                    if self.control.should_stop:
                        raise _Stop()
            except _Stop:
                stopped = self.control.reason
                break
            train_losses = {st.name: {k: v / max(1, st.loss_count) for k, v in st.loss_sums.items()}
                            for st in students}
            self._record_epoch(epoch, val_ids, train_losses)
            for st in students:
                st.snapshot()
            self.state.epoch = epoch
            self._emit("on_epoch_end", [r for r in self.records if r["epoch"] == epoch])
            if self.control.should_stop:
                stopped = self.control.reason
                break

        # back to the last finished epoch if we stopped inside one
        for st in students:
            st.model.load_state_dict(st.best_state)
        return self._finish(stopped, test_ids, teacher, notices)

    # -- one optimisation step of each student on the same batch
    def _train_step(self, index, train_ids, y, tout, epoch, step, need_att, need_hid):
        cfg = self.config
        input_ids, mask = collate(train_ids, index, self.pad)
        input_ids = input_ids.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        labels = y[index].to(self.device, non_blocking=True)
        t_logits = t_att = t_hid = None
        if tout is not None:
            t_logits, t_att, t_hid = tout.batch(index, input_ids.shape[1], self.device)
        for st in self.students:
            t0 = time.perf_counter()
            distilled = st.name == "distilled"
            read_att = distilled and need_att
            set_attention_backend(st.model, eager=read_att)
            st.model.train()
            capture = AttentionCapture(st.model) if read_att else None
            with autocast_for(self.device, cfg.train.mixed_precision):
                if capture is not None:
                    with capture:
                        out = st.model(input_ids=input_ids, attention_mask=mask,
                                       output_hidden_states=distilled and need_hid)
                        s_att = mapping.adapt_student(capture.pop_stacked().float(), self.head_rule)
                else:
                    out = st.model(input_ids=input_ids, attention_mask=mask,
                                   output_hidden_states=distilled and need_hid)
                    s_att = None
                s_hid = None
                if distilled and need_hid:
                    s_hid = torch.stack([st.projections[j](out.hidden_states[j + 1])
                                         for j in range(len(self.pairs))], 1)
                inp = LossInputs(out.logits, labels, mask, cfg.objectives.temperature,
                                 t_logits if distilled else None, s_att, t_att if distilled else None,
                                 s_hid, t_hid if distilled else None)
                loss, parts = combined_loss(st.weights, inp)
            if not torch.isfinite(loss):
                bad = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
                raise NonFiniteLossError(
                    f"the {st.name} student's loss became {loss.item()} at epoch {epoch}, step {step + 1} ({bad}); "
                    f"lower the learning rate (now {cfg.train.lr:g}) or the loss weights")
            loss.backward()
            params = [p for g in st.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            st.optimizer.step()
            st.scheduler.step()
            st.optimizer.zero_grad(set_to_none=True)
            st.loss_sums["total"] = st.loss_sums.get("total", 0.0) + loss.item()
            for k, v in parts.items():
                st.loss_sums[k] = st.loss_sums.get(k, 0.0) + v.item()
            st.loss_count += 1
            st.train_s += time.perf_counter() - t0

    # -- recording
    @torch.inference_mode()
    def _probe_maps(self, model) -> list[np.ndarray]:
        """Full attention of every probe example: list of (L, H, t_i, t_i) float32 arrays."""
        model.eval()
        set_attention_backend(model, eager=True)
        input_ids, mask = collate(self.probe_ids, range(len(self.probe_ids)), self.pad)
        with AttentionCapture(model) as cap:
            model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))
            maps = cap.pop_stacked().float().cpu()          # (B, L, H, T, T)
        return [maps[i, :, :, :len(x), :len(x)].numpy() for i, x in enumerate(self.probe_ids)]

    def _compare(self, student_maps: list[np.ndarray]) -> dict[str, list]:
        """Metrics between mapped teacher and student layers on the probe set: name -> (P, H') lists."""
        t = max(len(x) for x in self.probe_ids)
        tl = [p[0] for p in self.pairs]
        sl = [p[1] for p in self.pairs]

        def pad(maps, layers):
            out = torch.zeros((len(maps), len(layers), maps[0].shape[1], t, t))
            for i, m in enumerate(maps):
                n = m.shape[-1]
                out[i, :, :, :n, :n] = torch.from_numpy(m[layers])
            return out
        mask = torch.zeros((len(self.probe_ids), t))
        for i, x in enumerate(self.probe_ids):
            mask[i, :len(x)] = 1
        p = mapping.adapt_teacher(pad(self.teacher_probe, tl), self.head_rule, self.s_heads)
        q = mapping.adapt_student(pad(student_maps, sl), self.head_rule)
        return {k: v.tolist() for k, v in attention_metrics(p, q, mask).items()}

    def _record_epoch(self, epoch: int, val_ids, train_losses: dict) -> None:
        for st in self.students:
            set_attention_backend(st.model, eager=False)
            t0 = time.perf_counter()
            val_acc, val_loss = evaluate(st.model, val_ids, self.splits.val_labels, self.pad, self.device,
                                         mixed_precision=self.config.train.mixed_precision)
            t1 = time.perf_counter()
            maps = self._probe_maps(st.model)
            self.run.write_attention(f"{st.name}_e{epoch}", maps)
            att = self._compare(maps)
            t2 = time.perf_counter()
            rec = {"epoch": epoch, "student": st.name, "time_s": round(self.state.elapsed_s, 2),
                   "train_loss": train_losses.get(st.name, {}), "val_accuracy": val_acc, "val_loss": val_loss,
                   "attention": att, "js_mean": float(np.mean(att["js"])),
                   "timing": {"train_s": round(st.train_s if epoch else 0.0, 4), "eval_s": round(t1 - t0, 4),
                              "record_s": round(t2 - t1, 4)}}
            self.run.append_metrics(rec)
            self.records.append(rec)

    # -- the end: test accuracy, sizes, latency, weights, summary
    def _finish(self, stopped: str, test_ids, teacher, notices) -> dict:
        cfg = self.config
        mp = cfg.train.mixed_precision
        status = "cancelled" if stopped == "cancelled" else "done"
        accuracy, params, size, latency = {}, {}, {}, {}
        latency_ids = self.probe_ids
        if status == "done":
            self._progress("evaluate", 0, 1 + len(self.students))
            set_attention_backend(self.teacher, eager=False)
            accuracy["teacher"], _ = teacher_evaluation(
                teacher, f"test:{self.device.type}",
                lambda: evaluate(self.teacher, test_ids, self.splits.test_labels, self.pad, self.device,
                                 mixed_precision=mp))
            self._progress("evaluate", 1, 1 + len(self.students))
        params["teacher"] = count_parameters(self.teacher)
        size["teacher"] = teacher_size_bytes(teacher.path)
        if status == "done":
            latency["teacher"] = measure_latency(self.teacher, latency_ids, self.pad, self.device)
        for k, st in enumerate(self.students):
            set_attention_backend(st.model, eager=False)
            if status == "done":
                accuracy[st.name], _ = evaluate(st.model, test_ids, self.splits.test_labels, self.pad,
                                                self.device, mixed_precision=mp)
                latency[st.name] = measure_latency(st.model, latency_ids, self.pad, self.device)
                self._progress("evaluate", 2 + k, 1 + len(self.students))
            out = self.run.model_dir(st.name)
            set_attention_backend(st.model, eager=True)
            st.model.save_pretrained(out, safe_serialization=True)
            params[st.name] = count_parameters(st.model)
            size[st.name] = int(sum(f.stat().st_size for f in out.glob("*.safetensors")))
        tok_dir = self.run.path / "models" / "tokenizer"
        self.tokenizer.save_pretrained(tok_dir)
        by = {(r["epoch"], r["student"]): r for r in self.records}
        epochs = sorted({r["epoch"] for r in self.records})
        summary = {
            "status": status, "stopped_early": stopped or None,
            "accuracy": {k: accuracy.get(k) for k in ("teacher", "baseline", "distilled")},
            "test_size": len(test_ids),
            "val_accuracy": {s.name: [by[(e, s.name)]["val_accuracy"] for e in epochs] for s in self.students},
            "divergence": {"metric": "js", "epochs": epochs,
                           **{s.name: [by[(e, s.name)]["js_mean"] for e in epochs] for s in self.students}},
            "epochs_done": max(epochs) if epochs else 0,
            "params": params, "size_bytes": size, "latency_ms": latency, "device": str(self.device),
            "pairs": self.pairs, "head_rule": self.head_rule, "wall_s": round(self.state.elapsed_s, 1),
            "teacher_path": teacher.path, "teacher_cached": teacher.cached, "notices": notices,
        }
        self.run.write_json("summary.json", summary)
        self.state.phase = "done"
        return summary


def run_session(config: SessionConfig, store: RunStore | None = None, callbacks=(), run: Run | None = None) -> str:
    """Run one session to its end and return the run id. Errors are recorded in the run, then raised."""
    store = store or RunStore()
    if run is None:
        run = store.create(config.to_dict())
    session = Session(config, run, callbacks)
    try:
        summary = session.execute()
    except _Stop:
        run.update_status(status="cancelled", ended=now_iso(), error=None)
        _partial_summary(session, "cancelled")
        session._emit("on_session_end", run.read_json("summary.json"))
        return run.id
    except BaseException as e:  # noqa: BLE001 - every failure is recorded before it propagates
        msg = _describe(e, session)
        run.update_status(status="failed", ended=now_iso(), error=msg,
                          traceback=traceback.format_exc() if not isinstance(e, DistillError) else None)
        _partial_summary(session, "failed", msg)
        _save_finished_students(session)
        raise
    run.update_status(status=summary["status"], ended=now_iso(), error=None)
    session._emit("on_session_end", summary)
    return run.id


def _describe(e: BaseException, session: Session) -> str:
    where = f"epoch {session.state.epoch + 1}: " if session.state.phase == "train" else ""
    if isinstance(e, NonFiniteLossError):
        return str(e)
    if isinstance(e, DistillError):
        return f"{where}{e}"
    text = str(e)
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return (f"{where}out of memory during {session.state.phase}; try a smaller batch size "
                f"(now {session.config.train.batch_size}) or max_length (now {session.config.data.max_length})")
    if isinstance(e, KeyboardInterrupt):
        return f"{where}interrupted"
    return f"{where}{type(e).__name__}: {text}"


def _save_finished_students(session: Session) -> None:
    """After a failure, keep each student's weights as of its last finished epoch (for the explorer)."""
    if session.state.epoch < 1:
        return
    for st in getattr(session, "students", []):
        try:
            st.model.load_state_dict(st.best_state)
            st.model.save_pretrained(session.run.model_dir(st.name), safe_serialization=True)
        except Exception:  # noqa: BLE001 - the failure being recorded matters more than these weights
            log.exception("could not save the %s student of failed run %s", st.name, session.run.id)


def _partial_summary(session: Session, status: str, error: str | None = None) -> None:
    """Keep what finished: a summary of the recorded epochs, without test results."""
    recs = session.records
    epochs = sorted({r["epoch"] for r in recs})
    names = sorted({r["student"] for r in recs})
    by = {(r["epoch"], r["student"]): r for r in recs}
    session.run.write_json("summary.json", {
        "status": status, "error": error, "stopped_early": status,
        "accuracy": {"teacher": None, "baseline": None, "distilled": None},
        "val_accuracy": {n: [by[(e, n)]["val_accuracy"] for e in epochs if (e, n) in by] for n in names},
        "divergence": {"metric": "js", "epochs": epochs,
                       **{n: [by[(e, n)]["js_mean"] for e in epochs if (e, n) in by] for n in names}},
        "epochs_done": max(epochs) if epochs else 0,
    })


def start_session(config: SessionConfig, store: RunStore | None = None, callbacks=()) -> str:
    """Create the run and train it in a background thread; returns the run id at once.

    Progress, cancellation and results go through the run folder, so any page or process can follow it.
    """
    store = store or RunStore()
    run = store.create(config.to_dict())

    def target():
        try:
            run_session(config, store, callbacks, run=run)
        except BaseException:  # noqa: BLE001 - already recorded in the run's status
            log.exception("session %s failed", run.id)

    threading.Thread(target=target, name=f"session-{run.id}", daemon=True).start()
    return run.id
