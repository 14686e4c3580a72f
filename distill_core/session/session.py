"""A distillation session: a teacher and any number of student variants trained side by side on the same batches.

    run_id = run_session(SessionConfig(), RunStore("runs"), callbacks=[...])

Read top to bottom, a session is four public steps over one `Prepared` state:

    prepared = session.prepare()            # data, teacher, its cached outputs, variants, probe set
    session.record_epoch(prepared, 0)       # before training: every variant starts from the same weights
    for epoch in 1..E:
        session.train_epoch(prepared, epoch)    # every variant takes one step on each shared batch (train_steps.jsonl)
        session.record_epoch(prepared, epoch)   # validation accuracy, attention on the probe set vs the teacher
    session.finish(prepared)                # test accuracy, sizes, latency, final and best weights, summary.json

Every variant starts from the same weights and sees the same batches, so every difference between two
variants is their recipe; a labels-only `baseline` answers "did distillation help?".
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import distributed, fit_curve, machine, mapping, stats
from ..analysis import resolve_suggested
from ..config import MAX_FLOOR_EPOCHS, SessionConfig, VariantConfig, floor_epochs
from ..ensemble import Combine, twin_comparisons
from ..errors import ConfigError
from ..evaluate import accuracy_and_loss
from ..latency import measure_latency
from ..modality.base import Modality, Task, TeacherBatch, TeacherSource
from ..modality.registry import task_for
from ..models import count_parameters, pick_device, set_attention_backend
from ..objectives import MAP_INPUTS, TEACHER_INPUTS, TEACHER_LOGITS
from ..store import Run, RunStore
from ..teacher import PreparedTeacher, teacher_evaluation, teacher_logits, teacher_size_bytes
from ..vocab import ENSEMBLE, TEACHER, model_label
from .callbacks import SessionControl, SessionState, Stop, StoreProgress
from .variant import LossWindow, StepContext, Variant, build_variants, variant_needs

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything `prepare` builds; the later steps read it and change only the variants' weights."""
    device: torch.device
    modality: Modality                          # the task's data as the training loop reads it
    teacher: PreparedTeacher
    teacher_shape: tuple[int, int]              # (layers, heads)
    student_shape: tuple[int, int]
    pairs: list[tuple[int, int]]                # (teacher layer, student layer) of every mapped pair
    head_rule: str                              # direct, group or mean (resolved)
    variants: list[Variant]
    needs: frozenset                            # union of what the variants' objectives read
    teacher_outputs: TeacherSource | None       # the first teacher's outputs per batch; None: no variant reads them
    teacher_outputs_cached: bool | None         # True when they came from the disk cache; None: computed per batch
    teacher_probe: list[np.ndarray]             # (Lt, Ht, t_i, t_i) per probe example
    step: StepContext
    steps_per_epoch: int
    epochs: int                                 # train.epochs, or more for small data (train.min_steps)
    student_init: str                           # student.init resolved (auto -> random, from_teacher, ...)
    notices: list[str] = field(default_factory=list)   # what the user should know about this session's setup
    generated: object = None                    # strategies.generated.GeneratedData, when a variant uses it
    generated_outputs: TeacherSource | None = None     # the teacher's outputs on it
    layer_map_from: str | None = None           # the run a suggested layer map came from
    families: tuple[str, str] | None = None     # the (teacher, student) model families, where a task has several
    teachers: list = field(default_factory=list)   # every PreparedTeacher, the first one first (ensemble.teachers)
    sources: dict = field(default_factory=dict)    # what a variant learns from (teacher, teacher_2, ..., ensemble) ->
                                                   # its outputs; the first teacher's are teacher_outputs
    student: nn.Module | None = None            # the initial student (the last variant trains this very model)
    data: object = None                         # what the task's load_data returned

    @property
    def teacher_model(self) -> nn.Module:
        return self.teacher.model


def further_teacher_label(first, other) -> str:
    """How a further teacher differs from the first, in a few words: "seed 1", "part 2/2 of the examples", ..."""
    diff = [f"{f.name.replace('finetune_', '').replace('_', ' ')} {getattr(other, f.name)}"
            for f in dataclasses.fields(other) if getattr(other, f.name) != getattr(first, f.name)]
    return ", ".join(diff) or "the same settings"


def fit_sentence(fit: dict | None, cached: bool) -> str:
    """One teacher's preparation in a sentence: the examples it learnt from and its kept epoch's validation accuracy."""
    if not fit:
        return "was used as it is (not fine-tuned)"
    epochs = fit.get("curve") or fit.get("epochs") or []
    kept = next((e for e in epochs if e.get("epoch") == fit.get("kept_epoch")), None)
    acc = f" (validation accuracy {kept['val_accuracy']:.1%})" if kept else ""
    return (f"learnt from {fit.get('examples', 0):,} examples; epoch {fit.get('kept_epoch')} was kept{acc}"
            + ("" if cached else ", once, cached for later sessions"))


PREVIEW_MAPS = "teacher_before_finetune"     # the teacher's probe maps before its fine-tune (explorer, while it runs)


class Session:
    def __init__(self, config: SessionConfig, run: Run, callbacks=()):
        self.config, self.run = config, run
        self.task: Task = task_for(config)
        self.callbacks = [StoreProgress(run), *callbacks]
        self.state = SessionState(run_id=run.id, epochs=config.train.epochs,
                                  time_budget_s=config.train.time_budget_s or None)
        self.control = SessionControl()
        self.records: list[dict] = []
        self._units = None             # (statistic, {model: per-example units}) of a task scored per example's units
        self.prepared: Prepared | None = None
        self.teacher_val_s = 0.0       # seconds the teacher's validation evaluation took (0 when it was kept)
        self.waited_s = 0.0            # seconds it waited for another session to give the machine back (machine.py)

    # ---- events -----------------------------------------------------------------------------------------
    def emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self.state, self.control, *args)

    def progress(self, phase: str, done: int, total: int) -> None:
        if phase != self.state.phase:
            self.state.phase, self.state.phase_started = phase, time.time()
        self.state.done, self.state.total = done, total
        self.emit("on_step")
        if self.control.should_stop and self.control.reason == "cancelled" and phase != "train":
            raise Stop()       # the training loop stops itself between steps

    # ---- the whole session --------------------------------------------------------------------------------
    def execute(self) -> dict:
        self.emit("on_session_begin")
        with self._machine_turn() as waited:
            if waited:                 # the session's own time starts now; the wait is recorded apart
                self.waited_s, self.state.started = waited, time.time()
            return self._execute()

    def _machine_turn(self):
        """This session's turn on its device (machine.py): sessions of other processes on the same cores or GPU run
        before or after it, not beside it. While it waits, progress.json reads "waiting for the machine", with
        whose session it waits for; a cancel ends the wait."""
        if distributed.active():
            return contextlib.nullcontext(0.0)
        device = machine.device_label(pick_device(self.config.train.device))

        def waiting(who: str, waited_s: float) -> None:
            self.state.waiting = who
            self.progress(machine.WAITING_PHASE, 0, 0)
        who = {"run_id": self.run.id, "name": self.config.name or "",
               "what": os.environ.get(machine.ORIGIN_ENV, "")}
        return machine.machine_slot(device, who, waiting)

    def _teacher_point(self, point: dict) -> None:
        """A point of the teacher's training curve (fit_curve): into progress.json for the page that follows the
        run."""
        self.state.teacher_curve.append(point)
        self.emit("on_step")

    def _teacher_preview(self, data, model) -> None:
        """The teacher's attention on the probe examples before its fine-tune (attention/teacher_before_finetune,
        probe_preview.json): the explorer shows it while the fine-tune runs, before the run has a probe set. Only
        tasks whose data carries its modality (text, tagging), and only the first teacher."""
        modality = getattr(data, "modality", None)
        if modality is None or (self.run.path / "probe_preview.json").exists():
            return
        try:
            with torch.no_grad():
                maps = modality.probe_maps(model, next(model.parameters()).device)
        except Exception:  # noqa: BLE001 - a preview is a courtesy: the fine-tune goes on without it
            log.exception("could not record the teacher's attention before its fine-tune")
            return
        if isinstance(maps, dict) or not maps:
            return
        self.run.write_attention(PREVIEW_MAPS, maps)
        self.run.write_json("probe_preview.json", {**modality.probe_record(), "modality": modality.kind,
                                                   "teacher": self.config.teacher.source,
                                                   "teacher_layers": int(maps[0].shape[0]),
                                                   "teacher_heads": int(maps[0].shape[1])})

    def _execute(self) -> dict:
        p = self.prepare()
        self.record_epoch(p, 0)
        for epoch in range(1, p.epochs + 1):
            if not self.train_epoch(p, epoch):
                break
            self.record_epoch(p, epoch)
            self.emit("on_epoch_end", [r for r in self.records if r["epoch"] == epoch])
            self._check_time_budget()
            distributed.agree_stop(self.control)     # several processes: the main one's decision, everywhere
            if self.control.should_stop:
                break
        return self.finish(p)

    def _check_time_budget(self) -> None:
        budget = self.config.train.time_budget_s
        if budget and self.state.training_s > budget and not self.control.should_stop:
            self.control.stop("time budget")

    # ---- prepare ------------------------------------------------------------------------------------------
    def prepare(self) -> Prepared:
        """Load the data and the teacher, compute the teacher's outputs once, build the variants from one set of
        initial weights, and record the probe set."""
        cfg = self.config
        device = distributed.init(pick_device(cfg.train.device))    # several processes: this one's GPU or the CPU
        # several processes: the teacher's fine-tune and outputs are cached once per machine, by its first process
        with distributed.main_first(), distributed.every_process_writes():
            p = self._prepare(device)
        p.notices = self._notices(p) + p.notices          # the generated data's notices come last
        p.notices += distributed.notices(cfg.train.batch_size, device)
        self.state.epochs = p.epochs
        measured = 1 + len(p.variants)       # epoch 0: the teacher's validation and maps, then each variant's
        self.progress("epoch 0", 0, measured)
        p.teacher_probe = self.probe_maps(p, p.teacher_model)
        self.write_maps("teacher", p.teacher_probe)
        for name, t in zip(cfg.teacher_names[1:], p.teachers[1:]):     # the explorer shows each teacher's attention
            self.write_maps(name, self.probe_maps(p, t.model))
        self._write_probe(p)
        self.progress("epoch 0", 1, measured)
        self.prepared = p
        return p

    def _prepare(self, device) -> Prepared:
        """The task reads and splits the data, prepares every teacher (each cached like a session's only teacher),
        builds the initial student and maps its layers onto the teacher's; the teacher's outputs and the generated
        data follow, then the variants."""
        cfg, task = self.config, self.task
        self.progress("load data", 0, 1)
        data = task.load_data()
        self.progress("load data", 1, 1)
        subs = self._teacher_sessions()
        task.check_teacher_configs(data, subs)        # a teacher that cannot read this data is refused before any work
        with fit_curve.collecting(self._teacher_point, functools.partial(self._teacher_preview, data)):
            teachers = [task.prepare_teacher(c, data, device, self.progress) for c in subs]
        teacher = teachers[0]
        layer_rule, map_from = self._layer_rule(task.shape(teacher.model)[0])
        first, init = task.initial_student(data, teacher.model, layer_rule)
        plan = task.map_layers(data, teacher.model, first, layer_rule)
        pairs = [(t, s) for s, t in enumerate(plan.teacher_layers)]
        head_rule = mapping.resolve_head_rule(cfg.objectives.head_rule, plan.teacher_shape[1], plan.student_shape[1])
        modality = task.modality(data, first)
        needs = {vc.name: variant_needs(vc) for vc in cfg.variants}
        task.check_teachers(teachers, data)
        first_needs = frozenset().union(*(needs[vc.name] for vc in cfg.variants if vc.teacher in (TEACHER, ENSEMBLE)))
        outputs, hit = None, None
        if first_needs & TEACHER_INPUTS:
            outputs, hit = task.teacher_source(teacher, modality, device, plan.teacher_layers, head_rule,
                                               plan.student_shape[1], first_needs, self.progress)
        steps_per_epoch = math.ceil(modality.size("train") / cfg.train.batch_size)
        epochs = floor_epochs(cfg.train.epochs, steps_per_epoch, cfg.train.min_steps, MAX_FLOOR_EPOCHS["students"])
        p = Prepared(device, modality, teacher, plan.teacher_shape, plan.student_shape, pairs, head_rule, [],
                     frozenset().union(*needs.values()), outputs, hit, [],
                     StepContext(device, cfg.train.mixed_precision, [s for _, s in pairs], head_rule),
                     steps_per_epoch, epochs, init, layer_map_from=map_from, families=plan.families,
                     teachers=teachers, student=first, data=data)
        p.step.forward = task.student_forward(p)
        self._teacher_sources(p, layer_rule, needs)
        if any(vc.trains_on_generated for vc in cfg.variants):
            task.generate(self, p)
        p.variants = build_variants(cfg, first, [t.model for t in teachers], p.pairs, p.head_rule,
                                    p.student_shape[1], functools.partial(self.variant_steps, p), p.epochs, device)
        return p

    # ---- several teachers ---------------------------------------------------------------------------------
    def _teacher_sessions(self) -> list[SessionConfig]:
        """The session's config once per teacher, its teacher section replaced by that teacher's settings (the
        first one unchanged); every teacher is prepared and cached like a session's only teacher."""
        out = []
        for tc in self.config.teacher_configs:
            sub = copy.copy(self.config)
            object.__setattr__(sub, "teacher", tc)
            out.append(sub)
        return out

    def _teacher_sources(self, p: Prepared, layer_rule, needs: dict[str, frozenset]) -> None:
        """What each variant learns from beyond the first teacher's outputs: a further teacher's own outputs
        (teacher_2, ...), or the ensemble's (ensemble.combine over every teacher's logits; the first teacher's
        attention and hidden states, or the mean of every teacher's attention with ensemble.attention mean)."""
        cfg, names = self.config, self.config.teacher_names
        p.sources = {TEACHER: p.teacher_outputs}
        if len(p.teachers) < 2:
            return
        wanted: dict[str, set] = {}
        for vc in cfg.variants:
            wanted.setdefault(vc.teacher, set()).update(needs[vc.name] & TEACHER_INPUTS)
        ens = wanted.get(ENSEMBLE, set())
        mean_maps = cfg.ensemble.attention == "mean" and bool(ens & MAP_INPUTS)
        outputs = {TEACHER: p.teacher_outputs}
        for k in range(1, len(p.teachers)):
            want = set(wanted.get(names[k], set()))
            if ens:
                want |= {TEACHER_LOGITS} | (ens & MAP_INPUTS if mean_maps else set())
            if want:
                outputs[names[k]] = self.task.further_source(p.teachers[k], names[k], p, frozenset(want), layer_rule,
                                                             self.progress)
        p.sources.update({n: o for n, o in outputs.items() if n != TEACHER})
        if ens:
            p.sources[ENSEMBLE] = self.task.ensemble_source([outputs[n] for n in names], Combine.of(cfg),
                                                            cfg.ensemble.attention if mean_maps else "teacher")

    def _layer_rule(self, teacher_layers: int):
        """objectives.layer_map, with "suggested" resolved from the newest finished run like this one."""
        rule = self.config.objectives.layer_map
        if rule != "suggested":
            return rule, None
        if not self.task.suggests_layers:
            raise ConfigError(f"objectives.layer_map: suggested is computed from text classification runs only; "
                              f"for a {self.task.kind} session use uniform, last or a list of teacher layers"
                              + (" or stages" if self.task.kind == "image" else ""))
        cfg = self.config
        layers, run_id = resolve_suggested(RunStore(self.run.path.parent), cfg.teacher.source, teacher_layers,
                                           cfg.student.layers, cfg.student.heads, cfg.data.source)
        return layers, run_id

    def variant_steps(self, p: Prepared, vc: VariantConfig) -> int:
        """Optimisation steps a variant takes per epoch: the shared batches, and the generated ones if it uses them."""
        extra = (math.ceil(len(p.generated) / self.config.train.batch_size)
                 if vc.trains_on_generated and p.generated else 0)
        return p.steps_per_epoch + extra

    def _notices(self, p: Prepared) -> list[str]:
        """What the user should know about how this session was set up: the data's notices, how the teachers were
        prepared, how the maps pair, and what the small-data rules changed."""
        cfg, n_train = self.config, p.modality.size("train")
        out = list(p.modality.notices) + self.task.teacher_notices(p)
        for name, tc, t in zip(cfg.teacher_names[1:], cfg.teacher_configs[1:], p.teachers[1:]):
            out.append(f"{name} ({further_teacher_label(cfg.teacher, tc)}) " + fit_sentence(t.fit, t.cached))
        out += self.task.pairing_notices(p)
        if p.epochs > cfg.train.epochs:
            out.append(f"the training split is small ({n_train:,} examples, {p.steps_per_epoch} steps per epoch), "
                       f"so the students trained {p.epochs} epochs instead of {cfg.train.epochs}, to take at least "
                       f"{cfg.train.min_steps} steps each (train.min_steps; set it to 0 to keep the epochs as set)")
        if cfg.student.init == "auto" and p.student_init != "random":
            how = ("copies the teacher's embeddings and its mapped layers" if p.student_init == "from_teacher" else
                   "starts from the teacher's token embeddings projected onto its width")
            out.append(f"{self.task.auto_init_reason(n_train)} the student {how} "
                       f"(student.init auto chose {p.student_init}; set student.init to random to start from scratch)")
        return out

    def _write_probe(self, p: Prepared) -> None:
        t0 = time.perf_counter()
        val = teacher_evaluation(
            p.teacher, f"val:{p.device.type}",
            lambda: p.modality.predict(p.teacher_model, "val", p.device, self.config.train.mixed_precision))
        self.teacher_val_s = time.perf_counter() - t0
        val_acc, val_loss = val["accuracy"], val["loss"]
        self.run.write_json("probe.json", {
            **p.modality.probe_record(), "modality": p.modality.kind,
            "variants": [v.name for v in p.variants], "reference": self.config.reference,
            "pairs": p.pairs, "head_rule": p.head_rule,
            "teacher_layers": p.teacher_shape[0], "teacher_heads": p.teacher_shape[1],
            "student_layers": p.student_shape[0], "student_heads": p.student_shape[1],
            "teacher_path": p.teacher.path, "teacher_val_accuracy": val_acc, "teacher_val_loss": val_loss,
            "metric": self.metric(p),
            "notices": p.notices, "epochs": p.epochs, "student_init": p.student_init, "teacher_fit": p.teacher.fit,
            **self.task.probe_extra(p),
            **(self._teachers_record(p, "val") if len(p.teachers) > 1 else {}),
        })

    def _teachers_record(self, p: Prepared, split: str, answers: dict | None = None) -> dict:
        """Several teachers: each one's source, folder, fit and accuracy on `split`, and the ensemble's accuracy
        (ensemble.combine over their logits) with the variants that learn from it. With the variants' `answers` on
        the split, each variant that learns from another teacher than the first is paired with its twin, the variant
        of the same recipe that learns from the first teacher (McNemar, bootstrap interval): did it help?"""
        cfg, mp = self.config, self.config.train.mixed_precision
        logits = [teacher_logits(t, f"{split}:{p.device.type}",
                                 lambda t=t: p.modality.logits(t.model, split, p.device, mp)) for t in p.teachers]
        y = p.modality.labels[split]
        rows = []
        for name, tc, t, z in zip(cfg.teacher_names, cfg.teacher_configs, p.teachers, logits):
            rows.append({"name": name, "source": tc.source, "seed": tc.seed, "finetune_part": tc.finetune_part,
                         "path": t.path, "fit": t.fit, "accuracy": accuracy_and_loss(z, y)[0],
                         "params": count_parameters(t.model), "size_bytes": teacher_size_bytes(t.path)})
        combined = Combine.of(cfg)(torch.stack(logits))
        twins = twin_comparisons(cfg, y, answers) if answers else {}
        return {"teachers": rows, "ensemble": {
            "combine": cfg.ensemble.combine, "average": cfg.ensemble.average,
            "temperature": float(cfg.objectives.temperature), "attention": cfg.ensemble.attention, "split": split,
            "accuracy": accuracy_and_loss(combined, y)[0], "predictions": combined.argmax(-1).tolist(),
            "used_by": [v.name for v in p.variants if v.teacher == ENSEMBLE]}, "twins": twins,
            "learns_from": {v.name: v.teacher for v in p.variants}}

    # ---- train one epoch ----------------------------------------------------------------------------------
    def train_epoch(self, p: Prepared, epoch: int) -> bool:
        """One pass over the training split; every variant steps on each batch. False when stopped inside it."""
        cfg = self.config
        if self.state.train_started is None:
            self.state.train_started = time.time()
        for v in p.variants:
            v.start_epoch()
        total = p.steps_per_epoch * p.epochs
        done = (epoch - 1) * p.steps_per_epoch
        batches = p.modality.batches("train", cfg.train.batch_size, seed=cfg.train.seed * 1000 + epoch,
                                     buckets=cfg.train.length_buckets)
        every = max(1, p.steps_per_epoch // 25)      # train_steps.jsonl: about 25 records per epoch and variant
        window = LossWindow()
        extra = self.generated_schedule(p, epoch, len(batches))
        self.state.epoch_step, self.state.epoch_steps = 0, p.steps_per_epoch
        for k, index in enumerate(batches):
            t0 = time.perf_counter()
            where = f"at epoch {epoch}, step {done + k + 1}"
            window.add(self.train_step(p, index, where=where), {v.name: v.used for v in p.variants})
            for gen_index in extra[k]:
                window.add(self.generated_step(p, gen_index, where=f"{where} (generated data)"),
                           {v.name: v.used for v in p.variants if v.generated or v.transfer_labels})
            self.state.add_step(time.perf_counter() - t0)
            self.state.epoch_step = k + 1
            if (k + 1) % every == 0 or k + 1 == len(batches):
                self.run.append_train_steps(window.flush(done + k + 1, p.steps_per_epoch))
            self.progress("train", done + k + 1, total)
            distributed.agree_stop(self.control)
            if self.control.should_stop:       # the steps since the last record are recorded too
                self.run.append_train_steps(window.flush(done + k + 1, p.steps_per_epoch))
                return False
        return True

    def train_step(self, p: Prepared, index, where: str = "") -> dict[str, dict[str, float]]:
        """Each variant takes one step on the batch of training examples `index`; their loss components."""
        index = distributed.shard(index)                    # several processes: this one's rows of the batch
        batch = p.modality.batch("train", index, p.device)
        teachers = {}                                       # each source the variants learn from, once per batch
        out = {}
        for v in p.variants:
            if v.teacher not in teachers:
                teachers[v.teacher] = self.teacher_batch(p, batch, v.teacher)
            out[v.name] = v.step(batch, teachers[v.teacher], p.step, where)
        return out

    def generated_schedule(self, p: Prepared, epoch: int, shared_steps: int) -> list[list]:
        """For each shared step of an epoch, the generated batches to take after it: the epoch's generated batches
        (shuffled with the epoch's seed) spread evenly over the shared steps."""
        out: list[list] = [[] for _ in range(shared_steps)]
        if not p.generated or not any(v.generated or v.transfer_labels for v in p.variants):
            return out
        cfg = self.config
        batches = p.modality.batches("generated", cfg.train.batch_size, seed=cfg.train.seed * 1000 + epoch + 500,
                                     buckets=cfg.train.length_buckets)
        for j, index in enumerate(batches):
            out[min(shared_steps - 1, j * shared_steps // len(batches))].append(index)
        return out

    def generated_step(self, p: Prepared, index, where: str = "") -> dict[str, dict[str, float]]:
        """The variants that use generated data take one step on its batch `index`: those with `generated` learn the
        teacher's outputs and are never given labels; the labels-only reference (transfer_labels) learns the true
        labels and nothing of the teacher."""
        index = distributed.shard(index)
        labelled = p.modality.batch("generated", index, p.device)
        batch = dataclasses.replace(labelled, labels=None)
        teacher = p.generated_outputs(batch)
        out = {v.name: v.step(batch, teacher, p.step, where) for v in p.variants if v.generated}
        out.update({v.name: v.step(labelled, None, p.step, where) for v in p.variants if v.transfer_labels})
        return out

    def teacher_batch(self, p: Prepared, batch, source: str = TEACHER) -> TeacherBatch | None:
        """The outputs of the teacher `source` (teacher, teacher_2, ..., ensemble) for a batch, padded to its length."""
        outputs = p.teacher_outputs if source == TEACHER else p.sources.get(source)
        return None if outputs is None else outputs(batch)

    # ---- record one epoch ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def probe_maps(self, p: Prepared, model) -> list[np.ndarray] | dict[str, list[np.ndarray]]:
        """Attention of every layer on each probe example: list of (L, H, t_i, t_i) float32 (images: the modality's
        maps); a model with several kinds of attention (translation): {kind: such a list}, the primary kind first."""
        return p.modality.probe_maps(model, p.device)

    def write_maps(self, name: str, maps) -> None:
        """A model's probe maps into the run: the primary kind under `name`, any other kind under name.kind."""
        if not isinstance(maps, dict):
            self.run.write_attention(name, maps)
            return
        for k, (kind, kind_maps) in enumerate(maps.items()):
            self.run.write_attention(name if k == 0 else f"{name}.{kind}", kind_maps)

    def compare(self, p: Prepared, student_maps) -> tuple[dict[str, list], dict[str, dict]]:
        """Metrics between mapped teacher and student layers on the probe set: name -> (P, H') nested lists (empty
        when no layers are mapped: an image teacher and student of different families), and every kind's for a task
        with several kinds of attention."""
        return self.task.probe_divergence(p, p.teacher_probe, student_maps)

    @staticmethod
    def metric(p: Prepared) -> dict:
        """The task's main score (Modality.metric): what "accuracy" holds in the records of this run."""
        return dict(getattr(p.modality, "metric", None) or {"name": "accuracy", "short": "accuracy", "higher": True})

    def record_epoch(self, p: Prepared, epoch: int) -> list[dict]:
        """Validation accuracy and attention on the probe set of every variant; one metrics line each. Each
        variant keeps a copy of these weights, and of its best epoch's (by validation accuracy)."""
        out, eval_s = [], {}
        started = time.perf_counter()
        for k, v in enumerate(p.variants):
            set_attention_backend(v.model, eager=False)
            t0 = time.perf_counter()
            val_acc, val_loss = p.modality.evaluate(v.model, "val", p.device, self.config.train.mixed_precision)
            t1 = time.perf_counter()
            maps = self.probe_maps(p, v.model)
            self.write_maps(f"{v.name}_e{epoch}", maps)
            att, kinds = self.compare(p, maps)
            t2 = time.perf_counter()
            rec = {"epoch": epoch, "student": v.name, "time_s": round(self.state.elapsed_s, 2),
                   "train_loss": v.epoch_losses() if epoch else {}, "val_accuracy": val_acc, "val_loss": val_loss,
                   "attention": att, "js_mean": float(np.mean(att["js"])) if att else None,
                   **({"attention_kinds": kinds} if kinds else {}),
                   **({"attention_focus": v.focus.weights("cpu").tolist()}
                      if v.focus is not None and v.focus.running is not None else {}),
                   "timing": {"train_s": round(v.train_s if epoch else 0.0, 4), "eval_s": round(t1 - t0, 4),
                              "record_s": round(t2 - t1, 4)}}
            self.run.append_metrics(rec)
            out.append(rec)
            eval_s[v.name] = t1 - t0
            if epoch:
                v.snapshot(epoch, val_acc)
            else:
                self.progress("epoch 0", 2 + k, 1 + len(p.variants))
        self.records.extend(out)
        self.state.record_s = time.perf_counter() - started
        self.state.finish_parts = self._finish_estimate(p, eval_s)
        self.state.finish_s = sum(self.state.finish_parts)
        self.state.epoch = epoch
        return out

    def _finish_estimate(self, p: Prepared, eval_s: dict[str, float]) -> list[float]:
        """Seconds each model's test in the final evaluation should take, in its order: each model's measured
        validation time scaled by the test split's size (the teacher, every variant, and the variants whose best
        epoch is not their last, again)."""
        scale = p.modality.size("test") / max(1, p.modality.size("val"))
        again = [v for v in p.variants if v.best_differs]
        return [scale * s for s in (self.teacher_val_s, *(eval_s.get(v.name, 0.0) for v in (*p.variants, *again)))]

    # ---- finish -------------------------------------------------------------------------------------------
    def finish(self, p: Prepared) -> dict:
        """Back to the last finished epoch, then test accuracy, size, latency, weights and summary.json.

        Each variant's best epoch (by validation accuracy) is tested and saved too when it is not the last.
        A session stopped before its first epoch finished is not tested: its students never trained."""
        for v in p.variants:
            v.restore()
        stopped = self.control.reason if self.control.should_stop else ""
        trained = self.state.epoch >= 1
        status = "cancelled" if stopped == "cancelled" or not trained else "done"
        accuracy, latency, judged, best_accuracy, answers = {}, {}, {}, {}, {}
        conditions, details = None, {}
        if status == "done":
            accuracy, answers, best_accuracy, details = self._test(p)
            latency, conditions = self.latency(p)
            judged = self.judge(p, answers, accuracy)
            if any(v.adversarial is not None for v in p.variants):
                self.robustness(p)
        params = {"teacher": count_parameters(p.teacher_model)}
        size = {"teacher": teacher_size_bytes(p.teacher.path)}
        for v in p.variants:
            if trained:
                size[v.name] = self.save_weights(v)
            params[v.name] = count_parameters(v.model)
        if trained:
            p.modality.save(self.run.reader_dir(p.modality.saved_as))
        summary = {**self.partial_summary(status), "stopped_early": stopped or None,
                   "accuracy": {k: accuracy.get(k) for k in ("teacher", *[v.name for v in p.variants])},
                   "test_size": p.modality.size("test"), "metric": self.metric(p),
                   **({"details": details} if details else {}),
                   "params": params, "size_bytes": size, "latency_ms": latency, "latency_conditions": conditions,
                   "device": str(p.device),
                   "pairs": p.pairs, "head_rule": p.head_rule, "wall_s": round(self.state.elapsed_s, 1),
                   **({"machine_wait_s": round(self.waited_s, 1)} if self.waited_s else {}),
                   "train_s": round(self.state.training_s, 1), "teacher_path": p.teacher.path,
                   "teacher_cached": p.teacher.cached,
                   "teacher_outputs_cached": p.teacher_outputs_cached,
                   "notices": p.notices, "epochs": p.epochs, "student_init": p.student_init,
                   "teacher_fit": p.teacher.fit,
                   "strategies": {vc.name: vc.strategies for vc in self.config.variants if vc.strategies},
                   **(self._teachers_record(p, "test", answers) if status == "done" and len(p.teachers) > 1 else {}),
                   **({"generated": {**p.generated.counts(), "used_by": [v.name for v in p.variants if v.generated],
                                     "source": p.generated.source}} if p.generated is not None else {}),
                   **({"layer_map_from": p.layer_map_from} if p.layer_map_from else {}),
                   "best_epoch": self.best_epochs(p.variants, {**accuracy, **best_accuracy}), **judged}
        self.run.write_json("summary.json", summary)
        self.state.phase = "done"
        return summary

    def robustness(self, p: Prepared) -> dict:
        """Accuracy of the teacher and every variant under an embedding-space PGD attack at several epsilons, on
        the first examples of the test split (robustness.json)."""
        models = {TEACHER: p.teacher_model, **{v.name: v.model for v in p.variants}}
        for m in models.values():
            set_attention_backend(m, eager=False)
        record = self.task.robustness(models, p.modality, p.device, self.progress)
        self.run.write_json("robustness.json", record)
        return record

    def latency(self, p: Prepared) -> tuple[dict, dict]:
        """Median milliseconds for one probe example of the teacher and every variant, measured together
        (interleaved, on one thread: distill_core/latency.py), and the conditions they were measured under."""
        models = {TEACHER: p.teacher_model, **{v.name: v.model for v in p.variants}}
        measured = measure_latency(models, p.modality.latency_examples(p.device), p.device)
        return measured.latency_ms, measured.conditions

    def _test(self, p: Prepared) -> tuple[dict, dict, dict, dict]:
        """Test accuracy (the task's main score) and answers of the teacher and every variant (the answers also go to
        predictions.json), the test accuracy of each variant's best epoch where it is not the last, and each model's
        details where the task gives them (entity F1 per type, BLEU and chrF, ...). A task whose score is not the
        share of right answers gives per-example units, which judge() pairs."""
        mp = self.config.train.mixed_precision
        again = [v for v in p.variants if v.best_differs]
        n = 1 + len(p.variants) + len(again)
        self.progress("evaluate", 0, n)
        set_attention_backend(p.teacher_model, eager=False)
        results = {TEACHER: teacher_evaluation(p.teacher, f"test:{p.device.type}",
                                               lambda: p.modality.predict(p.teacher_model, "test", p.device, mp))}
        self.progress("evaluate", 1, n)
        for k, v in enumerate(p.variants):
            set_attention_backend(v.model, eager=False)
            results[v.name] = p.modality.predict(v.model, "test", p.device, mp)
            self.progress("evaluate", 2 + k, n)
        best = {}
        for k, v in enumerate(again):
            with v.best_weights():
                best[v.name] = p.modality.predict(v.model, "test", p.device, mp)["accuracy"]
            self.progress("evaluate", 2 + len(p.variants) + k, n)
        answers = {m: r["predictions"] for m, r in results.items()}
        units = {m: r["units"] for m, r in results.items() if r.get("units") is not None}
        statistic = next((r["statistic"] for r in results.values() if r.get("statistic")), None)
        self.run.write_json("predictions.json", {"split": "test", "labels": p.modality.labels["test"],
                                                 "predictions": answers,
                                                 **({"units": units, "statistic": statistic} if units else {})})
        self._units = (statistic, units) if units else None
        details = {m: r["details"] for m, r in results.items() if r.get("details")}
        return {m: r["accuracy"] for m, r in results.items()}, answers, best, details

    def judge(self, p: Prepared, answers: dict[str, list[int]], accuracy: dict | None = None) -> dict:
        """What a reader must be told about the test results: the majority-class rate, each model that predicts
        one class or does not beat that rate, a teacher that scores below the labels-only reference, and each
        variant against the reference, paired on the same examples (McNemar's exact test, bootstrap interval of the
        difference)."""
        labels = p.modality.labels["test"]
        ref = self.config.reference
        below = stats.teacher_below_reference(accuracy or {}, ref, model_label(ref, ref) if ref else "",
                                              self.metric(p)["name"])
        units = self._units
        if units is not None:           # a score per example (sentence chrF) or counts (entity F1): paired bootstrap
            statistic, per_model = units
            paired = {} if ref is None or ref not in per_model else {
                v.name: stats.paired_units(statistic, per_model[ref], per_model[v.name], seed=self.config.train.seed)
                for v in p.variants if v.name != ref and v.name in per_model}
            return {"majority_rate": None, "warnings": below, "paired": paired}
        names = p.modality.splits.label_names
        warnings = [w for m in answers for w in stats.prediction_warnings(
            m, answers[m], labels, names, shown_as=model_label(m, self.config.reference))]
        paired = {}
        if ref is not None:
            y = np.asarray(labels)
            ref_ok = np.asarray(answers[ref]) == y
            paired = {v.name: stats.paired_comparison(ref_ok, np.asarray(answers[v.name]) == y,
                                                      seed=self.config.train.seed)
                      for v in p.variants if v.name != ref}
        return {"majority_rate": stats.majority_rate(labels), "warnings": warnings + below, "paired": paired}

    def save_variant(self, v: Variant, weights: str = "final") -> int:
        """Write a variant's current weights (safetensors) into the run as its `weights` ("final" or "best");
        returns their size in bytes."""
        out = self.run.weights_path(v.name, weights)
        set_attention_backend(v.model, eager=True)
        with distributed.every_process_writes():        # several processes: each writes its own run
            v.model.save_pretrained(out, safe_serialization=True)
        return int(sum(f.stat().st_size for f in out.glob("*.safetensors")))

    def save_weights(self, v: Variant) -> int:
        """Write a variant's last finished epoch's weights (models/<variant>/) and, when its best epoch is another
        one, the best epoch's (models/<variant>.best/); returns the size of the first in bytes."""
        size = self.save_variant(v)
        if v.best_differs:
            with v.best_weights():
                self.save_variant(v, "best")
        return size

    def best_epochs(self, variants: list[Variant], test_accuracy: dict[str, float] | None = None) -> dict:
        """summary.json "best_epoch": per variant with a finished epoch, its best epoch by validation accuracy, that
        accuracy, the best weights' test accuracy (None when not tested) and the epoch of the final weights.
        `test_accuracy` holds the best weights' accuracy: the final one's where the two epochs coincide."""
        test_accuracy = test_accuracy or {}
        return {v.name: {"epoch": v.best_epoch, "val_accuracy": v.best_val_accuracy,
                         "test_accuracy": test_accuracy.get(v.name), "final_epoch": v.last_epoch}
                for v in variants if v.best_epoch is not None}

    def partial_summary(self, status: str, error: str | None = None) -> dict:
        """What the recorded epochs say, without test results (also written when a session fails)."""
        best = self.best_epochs(self.prepared.variants) if self.prepared is not None else {}
        return partial_summary(self.config, self.records, status, error, best)


def partial_summary(config: SessionConfig, records: list[dict], status: str, error: str | None = None,
                    best_epoch: dict | None = None) -> dict:
    """What a session's per-epoch records (its metrics.jsonl lines) say, without test results: the summary of a
    session that failed, was cancelled, or whose process died."""
    epochs = sorted({r["epoch"] for r in records})
    names = [v.name for v in config.variants]
    by = {(r["epoch"], r["student"]): r for r in records}
    return {
        "status": status, "error": error, "stopped_early": status if status != "done" else None,
        "variants": names, "reference": config.reference,
        "accuracy": {k: None for k in ("teacher", *names)},
        "val_accuracy": {n: [by[(e, n)]["val_accuracy"] for e in epochs if (e, n) in by] for n in names},
        "divergence": {"metric": "js", "epochs": epochs,
                       **{n: [by[(e, n)]["js_mean"] for e in epochs if (e, n) in by] for n in names}},
        "epochs_done": max(epochs) if epochs else 0,
        "best_epoch": best_epoch or {},
    }
