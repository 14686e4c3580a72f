"""Text classification as a session sees it: a tokenizer and the splits encoded once, a Hugging Face encoder as the
teacher (fine-tuned here once and cached), a student built from a shape (or the teacher's knowledge on small data),
and the teacher's outputs on the training split computed once and kept on disk."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ... import mapping
from ...attacks import robustness_curves
from ...ensemble import Combine, mean_maps
from ...errors import ConfigError, ModelError
from ...models import build_student, load_tokenizer, num_layers_heads, same_tokenizer
from ...objectives import ATTENTION, ATTENTION_SCORES, HIDDEN, MAP_INPUTS
from ...strategies import generated as gen_lib
from ...teacher import TeacherOutputs, cached_teacher_outputs, prepare_teacher
from ...vocab import teacher_name
from ..base import Batch, Task, TeacherBatch
from .data import load_splits
from .modality import TextModality
from .students import EncoderStudents


@dataclass
class TextData:
    modality: TextModality
    transfer_texts: list[str] | None        # the generated data's source texts, read before the teacher's work
    transfer_labels: list[int] | None = None  # their true labels, where the source has them (transfer_labels)
    pool: dict | None = None                # the unused rows divided between teacher and transfer (held out)


class PrecomputedOutputs:
    """A teacher's outputs on a split, computed once (TeacherOutputs), served per batch padded to its length."""

    def __init__(self, outputs: TeacherOutputs, device: torch.device):
        self.outputs, self.device = outputs, device

    logits = property(lambda self: self.outputs.logits)           # (N, C)
    attention = property(lambda self: self.outputs.attention)     # per example (P, H', t, t) or None
    hidden = property(lambda self: self.outputs.hidden)           # per example (P, t, Dt) or None
    scores = property(lambda self: self.outputs.scores)           # per example (P, H', t, t) or None

    def __call__(self, batch: Batch) -> TeacherBatch:
        logits, att, hid, scores = self.outputs.batch(batch.index, batch.length, self.device)
        return TeacherBatch(logits, att, hid, scores=scores)


class TextTask(EncoderStudents, Task):
    kind = "text"
    padded_maps = True
    suggests_layers = True
    saved_as = TextModality.saved_as

    # ---- data and teachers --------------------------------------------------------------------------------
    def load_data(self) -> TextData:
        """Tokenise the splits once; a bad transfer source is refused here, before the teacher's work."""
        cfg = self.config
        splits = load_splits(cfg.data)
        transfer_texts = transfer_labels = pool = None
        if any(v.trains_on_generated for v in cfg.variants):
            splits, pool = gen_lib.hold_out_from_teacher(cfg.transfer, splits)
            transfer_texts, transfer_labels = gen_lib.load_transfer_rows(cfg.transfer, splits, pool)
        modality = TextModality(load_tokenizer(cfg.teacher.source), splits, cfg.data.max_length)
        return TextData(modality, transfer_texts, transfer_labels, pool)

    def check_teacher_configs(self, data: TextData, configs: list) -> None:
        """Every further teacher must read the first teacher's tokens."""
        for k, sub in enumerate(configs[1:], start=1):
            other = load_tokenizer(sub.teacher.source)
            if not same_tokenizer(data.modality.tokenizer, other):
                raise ConfigError(f"{teacher_name(k)} ({sub.teacher.source}) splits text into other tokens than the "
                                  f"first teacher ({self.config.teacher.source}): the teachers of one session are "
                                  f"compared token by token, so they must share a tokenizer. Use a model of the same "
                                  f"family, e.g. the first teacher with another seed ({{seed: 1}}) or on part of the "
                                  f"data ({{finetune_part: 2/2}})")

    def prepare_teacher(self, config, data: TextData, device, progress):
        m = data.modality
        return prepare_teacher(config, m.splits, m.ids["train"], device, progress, tokenizer=m.tokenizer,
                               val_ids=m.ids["val"], extra_ids=m.ids["extra"])

    def check_teachers(self, teachers: list, data: TextData) -> None:
        """Teachers of one session answer with the same labels in the same order: a teacher whose trained head names
        other labels than the data's is refused (one fine-tuned here learnt the data's labels)."""
        if len(teachers) < 2:
            return
        label_names = data.modality.splits.label_names
        for k, t in enumerate(teachers):
            conf = getattr(t.model, "config", None)
            if t.finetuned or t.head_new or conf is None:
                continue
            names = [str((conf.id2label or {}).get(i, f"LABEL_{i}")) for i in range(len(label_names))]
            generic = all(n.upper() == f"LABEL_{i}" for i, n in enumerate(names))
            if not generic and [n.lower() for n in names] != [n.lower() for n in map(str, label_names)]:
                raise ConfigError(f"{teacher_name(k)} ({t.path}) was trained for the labels {', '.join(names)}, but "
                                  f"the data's labels are {', '.join(map(str, label_names))}: every teacher must "
                                  f"answer with the data's labels in their order. Fine-tune it on this data "
                                  f"(finetune: always in its ensemble.teachers entry) or pick a teacher trained for "
                                  f"these labels")

    # ---- the student (EncoderStudents) ----------------------------------------------------------------------
    def new_student(self, modality: TextModality, teacher: nn.Module, init_layers, init) -> nn.Module:
        return build_student(self.config.student, teacher, modality.splits.num_labels, init_layers, init)

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    def outputs(self, teacher, ids: list, split_key: str, modality: TextModality, device, layers: list[int],
                head_rule: str, student_heads: int, needs: frozenset, progress) -> tuple[TeacherOutputs, bool]:
        """The teacher's outputs on `ids` (one split, named `split_key` in the cache key), cached on disk."""
        cfg = self.config
        return cached_teacher_outputs(
            teacher, ids, modality.pad_id, device, layers, head_rule, student_heads, ATTENTION in needs,
            HIDDEN in needs, key_parts={"data": modality.splits.fingerprint + ":" + split_key,
                                        "max_length": cfg.data.max_length},
            batch_size=max(cfg.train.batch_size, 64), mixed_precision=cfg.train.mixed_precision, progress=progress,
            need_scores=ATTENTION_SCORES in needs)

    def teacher_source(self, teacher, modality: TextModality, device, layers, head_rule, student_heads, needs,
                       progress) -> tuple[PrecomputedOutputs, bool]:
        out, hit = self.outputs(teacher, modality.ids["train"], "train", modality, device, layers, head_rule,
                                student_heads, needs, progress)
        return PrecomputedOutputs(out, device), hit

    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule,
                       progress) -> PrecomputedOutputs:
        t_layers, t_heads = num_layers_heads(teacher.model)
        layers = mapping.layer_map(layer_rule, t_layers, prepared.student_shape[0])
        if needs & MAP_INPUTS:       # maps are compared: their heads must reduce alike
            mapping.check_same_head_rule(self.config.objectives.head_rule, name, t_heads, prepared.teacher_shape[1],
                                         prepared.student_shape[1], prepared.head_rule)
        return self.teacher_source(teacher, prepared.modality, prepared.device, layers, prepared.head_rule,
                                   prepared.student_shape[1], needs, progress)[0]

    def ensemble_source(self, sources: list[PrecomputedOutputs], combine: Combine, attention: str) -> PrecomputedOutputs:
        """The teachers' logits combined per example once; attention (and its scores) from the first teacher or
        every teacher's mean; hidden states from the first."""
        first = sources[0]
        logits = combine(torch.stack([s.logits for s in sources]))
        maps, scores = first.attention, first.scores
        if attention == "mean" and first.attention is not None:
            maps = mean_maps([s.attention for s in sources])
        if attention == "mean" and first.scores is not None:
            scores = mean_maps([s.scores for s in sources])
        return PrecomputedOutputs(TeacherOutputs(logits, maps, first.hidden, scores), first.device)

    # ---- generated data, notices, robustness --------------------------------------------------------------
    def generate(self, session, p) -> None:
        """Generated transfer data (from the transfer texts load_data read) and the teacher's outputs on it (once,
        cached), when a variant trains on it; its examples beside their originals go to generated.json."""
        cfg, modality = self.config, p.modality
        session.progress("generate data", 0, 1)
        embedding = p.teacher_model.get_input_embeddings().weight.detach().float().cpu()
        gen = gen_lib.build_generated(cfg.transfer, modality.splits, modality.ids["train"], modality.tokenizer,
                                      embedding, cfg.data.max_length, texts=p.data.transfer_texts)
        mean_tokens = sum(len(x) for x in gen.ids) / max(1, len(gen))
        kinds = (ATTENTION in p.needs) + (ATTENTION_SCORES in p.needs)     # probabilities, scores: as large each
        gen_lib.check_memory(cfg.transfer, len(gen), mean_tokens, len(p.pairs),
                             kinds * mapping.compared_heads(p.head_rule, p.student_shape[1]), kinds > 0,
                             p.teacher_model.config.hidden_size if HIDDEN in p.needs else 0)
        modality.ids["generated"] = gen.ids
        modality.labels["generated"] = [-1] * len(gen)      # generated batches carry no labels ...
        if any(vc.transfer_labels for vc in cfg.variants):  # ... but to the labels-only reference
            kept = gen_lib.kept_positions(p.data.transfer_texts or [], modality.splits.val_texts +
                                          modality.splits.test_texts)
            modality.labels["generated"] = gen_lib.true_labels(
                gen, [p.data.transfer_labels[i] for i in kept], modality.splits.train_labels)
        out, _ = self.outputs(p.teacher, gen.ids, "generated", modality, p.device, [t for t, _ in p.pairs],
                              p.head_rule, p.student_shape[1], p.needs, session.progress)
        p.generated, p.generated_outputs = gen, PrecomputedOutputs(out, p.device)
        probs = torch.softmax(out.logits.float(), -1)
        if notice := self.pool_notice(p):
            gen.notices.append(notice)
        session.run.write_json("generated.json", {
            **gen_lib.examples_record(gen, modality.tokenizer, modality.ids["train"], probs,
                                      modality.splits.label_names),
            "used_by": [vc.name for vc in self.config.variants if vc.generated],
            "labels_used_by": [vc.name for vc in self.config.variants if vc.transfer_labels],
            "pool": self.pool_record(p)})
        p.notices.extend(gen.notices)
        session.progress("generate data", 1, 1)

    def pool_record(self, p) -> dict:
        """Whose labels the transfer texts carry: whether the teacher learned them, and (held out) which unused rows
        the teacher learned from and which became transfer texts (positions among the dataset's unused rows)."""
        cfg, pool = self.config, p.data.pool
        seen = (cfg.transfer.source == "unused" and cfg.teacher.finetune_on == "all" and pool is None
                and bool(p.teacher.fit))
        out = {"source": cfg.transfer.source, "teacher_saw_labels": seen,
               "held_out_from_teacher": pool is not None}
        if pool is not None:
            out.update(teacher_rows=pool["teacher_rows"], transfer_rows=pool["transfer_rows"])
        return out

    def pool_notice(self, p) -> str | None:
        """What a reader of the results must know about the transfer texts' labels, in a sentence."""
        record = self.pool_record(p)
        if record["held_out_from_teacher"]:
            return (f"the dataset's unused rows were divided in two (transfer.held_out_from_teacher): the teacher "
                    f"learned from {len(record['teacher_rows']):,} of them, and the transfer texts come from the "
                    f"other {len(record['transfer_rows']):,}, whose labels no model saw")
        if record["teacher_saw_labels"]:
            return ("the transfer texts are rows of the dataset the teacher was fine-tuned on with their labels "
                    "(teacher.finetune_on: all): a generated-data student learns the teacher's memory of those "
                    "labels, so compare it with a labels-only student on the same rows (transfer_labels), or hold "
                    "them out from the teacher (transfer.held_out_from_teacher)")
        return None

    def teacher_notices(self, p) -> list[str]:
        fit = p.teacher.fit
        if not (fit and fit.get("curve")):
            return []
        curve = ", ".join(f"{c['val_accuracy']:.1%}" for c in fit["curve"])
        return [f"the teacher was fine-tuned on {fit['examples']:,} examples for {fit['epochs_run']} of up to "
                f"{fit['epochs_planned']} epochs (validation accuracy by epoch: {curve}); epoch "
                f"{fit['kept_epoch']} was kept" + (f", {fit['seconds']:.0f} s once, cached for later sessions"
                                                   if not p.teacher.cached else "")]

    def robustness(self, models: dict, modality: TextModality, device, progress) -> dict:
        return robustness_curves(models, modality.ids["test"], modality.labels["test"], modality.pad_id, device,
                                 progress=progress)

    # ---- a finished run, reopened -------------------------------------------------------------------------
    @classmethod
    def reopen_reader(cls, finished):
        """The tokenizer the run kept (models/tokenizer), else the teacher's."""
        folder = finished.run.reader_dir(cls.saved_as)
        source = folder if folder.is_dir() else finished.teacher_path()
        try:
            return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer of run {finished.run.id} from {source}: {e}") from None

    @classmethod
    def reopen_splits(cls, config):
        return load_splits(config.data)

    @classmethod
    def reopen_modality(cls, finished, splits) -> TextModality:
        # only validation and test are read when a run is measured again: the training texts are not encoded
        kept = dataclasses.replace(splits, train_texts=[], train_labels=[], extra_texts=[], extra_labels=[])
        return TextModality(finished.reader(), kept, finished.config.data.max_length)

    @staticmethod
    def load_model(folder) -> nn.Module:
        """A sequence classifier with eager attention: safetensors weights only, local files only, never remote
        code."""
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), attn_implementation="eager", local_files_only=True, trust_remote_code=False,
            use_safetensors=True)
        return model.to("cpu").eval()
