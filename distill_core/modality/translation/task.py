"""Translation as a session sees it: sentence pairs split by source sentence, an encoder-decoder teacher (a Marian
model trained here once and cached, or a Marian folder / hub id), smaller Marian students sharing its tokenizer, the
teacher run on every batch (its next-token distributions over thousands of subwords are too large to keep for every
training token) and its own translations computed once for sequence-level KD, three kinds of attention compared
kind by kind, and chrF / BLEU by decoding."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoTokenizer

from ... import mapping
from ...config import StudentConfig, resolve_init
from ...errors import ConfigError, ModelError
from ...evaluate import autocast_for
from ...models import project_token_embeddings, resolve_source, set_attention_backend
from ...objectives import ATTENTION, OBJECTIVES, TEACHER_LOGITS, TRANSLATION_KINDS
from ...sources import source_kind
from ...teacher import PreparedTeacher
from ..base import INIT_LOCK, Batch, LayerPlan, StudentOutputs, Task, TeacherBatch
from .capture import KindsCapture
from .data import TranslationSplits, load_translation_splits
from .decoding import decoder_rows, pad_rows
from .divergence import adapt_teacher, probe_kind_metrics
from .modality import MODALITY_FILE, TranslationModality, poor_teacher_warning
from .models import KIND_AXES, KIND_NAMES, KINDS, copy_teacher_layers, kinds_shape, load_marian, student_from
from .teacher import prepare_translation_teacher, teacher_translations
from .tokenizer import same_vocabulary

# The student a translation session builds while the student section keeps the classification defaults (3 layers,
# 4 heads, 192 wide, 768 feed-forward: wider than the built-in teacher): 2 encoder and 2 decoder layers, 96 wide. On
# the default pair, labels only for 10 epochs, it reached a validation chrF of 17 (the teacher 29); 128 wide, 15.
DEFAULT_STUDENT = {"layers": 2, "heads": 4, "hidden": 96, "intermediate": 384}
SEQ_KD = "seq_kd"
REFUSED = "is built for text classification and images, not for translation"


@dataclass
class TranslationData:
    """What load_data reads, and what the teacher's preparation adds to it."""
    splits: TranslationSplits
    teacher: PreparedTeacher | None = None
    modality: TranslationModality | None = None
    seq_cached: bool | None = None          # whether the teacher's translations came from the cache
    notices: list[str] = field(default_factory=list)


class TranslationTeacherOutputs:
    """The teacher's outputs on each training batch, teacher-forced on the reference: next-token logits (B, Tt, V)
    when a variant reads them, each needed kind's mapped attention reduced to the compared heads, and its own
    translation of each source (sequence-level KD), as decoder inputs and labels."""

    def __init__(self, model, kinds: dict[str, tuple[list[int], str, int]], need_logits: bool,
                 translations: list[list[int]] | None, start: int, pad: int, device, mixed_precision: bool):
        self.model, self.kinds, self.need_logits = model, kinds, need_logits
        self.translations, self.start, self.pad = translations, start, pad
        self.device, self.mixed_precision = torch.device(device), mixed_precision

    @torch.no_grad()
    def __call__(self, batch: Batch) -> TeacherBatch:
        out = TeacherBatch()
        if self.need_logits or self.kinds:
            self.model.eval()
            set_attention_backend(self.model, eager=bool(self.kinds))
            with autocast_for(self.device, self.mixed_precision):
                if self.kinds:
                    with KindsCapture(self.model, {k: layers for k, (layers, _, _) in self.kinds.items()}) as cap:
                        res = self.model(**batch.inputs)
                        maps = cap.pop()
                    out.extra["attention"] = {k: adapt_teacher(maps[k].float(), rule, heads)
                                              for k, (_, rule, heads) in self.kinds.items()}
                    out.attention = out.extra["attention"].get("cross")
                else:
                    res = self.model(**batch.inputs)
            if self.need_logits:
                out.logits = res.logits.float()                                   # (B, Tt, V)
        if self.translations is not None:
            rows = [self.translations[i] for i in batch.index]
            dec, dec_mask = pad_rows(decoder_rows(rows, self.start), self.pad)
            labels, _ = pad_rows(rows, self.pad, fill=-100)
            out.extra["seq_kd"] = {"decoder_input_ids": dec.to(self.device),
                                   "decoder_attention_mask": dec_mask.to(self.device),
                                   "labels": labels.to(self.device)}
        return out


class TranslationTask(Task):
    kind = "translation"
    padded_maps = True
    suggests_layers = False
    saved_as = TranslationModality.saved_as
    data_word, data_pronoun = "sentence pairs", "them"

    def __init__(self, config):
        super().__init__(config)
        self.maps: dict[str, list[int]] = {}       # kind -> the teacher layer of each student layer
        self.rules: dict[str, str] = {}            # kind -> the resolved head rule
        self.shapes: dict[str, tuple] = {}         # kind -> ((teacher layers, heads), (student layers, heads))

    # ---- what the variants use ----------------------------------------------------------------------------------
    def used(self) -> set[str]:
        """The losses some variant trains with (positive weight)."""
        return {n for vc in self.config.variants for n, w in vc.losses.items() if w > 0}

    def kinds_used(self) -> list[str]:
        """The kinds of attention some variant's losses compare, in KINDS order."""
        kinds = {TRANSLATION_KINDS[n] for n in self.used() if n in TRANSLATION_KINDS}
        return [k for k in KINDS if k in kinds]

    def student_shape(self) -> dict:
        """The student's shape: the student section's, or DEFAULT_STUDENT while it keeps the classification
        defaults."""
        s, d = self.config.student, StudentConfig()
        if (s.layers, s.heads, s.hidden, s.intermediate) == (d.layers, d.heads, d.hidden, d.intermediate):
            return dict(DEFAULT_STUDENT)
        return {"layers": s.layers, "heads": s.heads, "hidden": s.hidden, "intermediate": s.intermediate}

    # ---- data and teachers --------------------------------------------------------------------------------
    def load_data(self) -> TranslationData:
        """The pairs, split by source sentence; what a translation session cannot do is refused first."""
        for vc in self.config.variants:
            if vc.attention_focus:
                raise ConfigError(f"variant {vc.name}: attention_focus weights one kind of attention's heads and "
                                  f"{REFUSED}; remove it from the variant")
        return TranslationData(load_translation_splits(self.config.data, self.config.translation))

    def check_teacher_configs(self, data: TranslationData, configs: list) -> None:
        """One teacher; and, for the built-in teacher whose shape is known before its training, layer maps and head
        rules that fit the student, refused before any training."""
        if len(configs) > 1:
            raise ConfigError("a translation session learns from one teacher: several teachers (ensemble.teachers) "
                              f"{REFUSED}; remove ensemble.teachers")
        cfg = self.config
        if cfg.teacher.source == "default" and not cfg.student.source:
            tr, s = cfg.translation, self.student_shape()
            teacher = {k: (tr.teacher_layers, tr.teacher_heads) for k in KINDS}
            self._plan(teacher, {k: (s["layers"], s["heads"]) for k in KINDS}, cfg.objectives.layer_map)

    def prepare_teacher(self, config, data: TranslationData, device, progress) -> PreparedTeacher:
        t = prepare_translation_teacher(config, data.splits, device, progress)
        data.teacher = t
        return t

    def shape(self, model: nn.Module) -> tuple[int, int]:
        """(layers, heads) of the primary kind, the cross-attention."""
        return kinds_shape(model)["cross"]

    # ---- the student --------------------------------------------------------------------------------------
    def initial_student(self, data: TranslationData, teacher: nn.Module, layer_rule) -> tuple[nn.Module, str]:
        """student.source (a Marian model that must read the teacher's tokens), or a smaller Marian model of the
        teacher's vocabulary built from the student's shape (seeded by train.seed), started at random, from the
        teacher's layers (widths equal) or from its projected embeddings, as student.init says."""
        cfg, s = self.config, self.config.student
        if s.source:
            return self._pretrained_student(data, s.source), "pretrained"
        shape = self.student_shape()
        t = teacher.config
        same = (shape["hidden"], shape["heads"], shape["intermediate"]) == (
            t.d_model, t.decoder_attention_heads, t.decoder_ffn_dim)
        init = resolve_init(s.init, len(data.splits.train_sources), same,
                            can_project=shape["hidden"] <= t.d_model)
        if init == "from_teacher" and not same:
            raise ConfigError(f"student.init 'from_teacher' copies the teacher's layers, which needs its widths: "
                              f"hidden {t.d_model}, heads {t.decoder_attention_heads}, intermediate "
                              f"{t.decoder_ffn_dim}; use init 'random' or 'teacher_embeddings'")
        with INIT_LOCK:
            torch.manual_seed(cfg.train.seed)
            student = student_from(teacher, shape["layers"], shape["heads"], shape["hidden"], shape["intermediate"],
                                   s.dropout)
            if init == "from_teacher":
                t_shape = kinds_shape(teacher)
                enc = list(s.init_layers) if s.init_layers else mapping.layer_map(
                    cfg.translation.layer_map("encoder", layer_rule), t_shape["encoder"][0], shape["layers"])
                dec = list(s.init_layers) if s.init_layers else mapping.layer_map(
                    cfg.translation.layer_map("decoder", layer_rule), t_shape["decoder"][0], shape["layers"])
                copy_teacher_layers(student, teacher, enc, dec)
            elif init == "teacher_embeddings":
                project_token_embeddings(student, teacher)
        return student, init

    def _pretrained_student(self, data: TranslationData, source: str) -> nn.Module:
        """A Marian student from a folder or the hub, refused unless its tokenizer is the teacher's."""
        path, local = resolve_source(source)
        if source_kind(source, "model") == "hub":
            from ...hub import require_online
            require_online(f"student {source!r}")
        student = load_marian(path, local_only=local)
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=local, trust_remote_code=False)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer of student {source}: {e}") from None
        if not same_vocabulary(data.teacher.tokenizer, tok):
            raise ConfigError(f"student {source} splits text into other tokens than the teacher "
                              f"({self.config.teacher.source}): a translation student learns the teacher's "
                              f"next-token distributions token by token, so it must share the teacher's tokenizer. "
                              f"Leave student.source empty to build a student of the teacher's vocabulary from "
                              f"student.layers, heads and hidden, or pick a student of the teacher's family")
        return student

    def _plan(self, teacher: dict, student: dict, layer_rule) -> None:
        """Each kind's layer map and resolved head rule from (layers, heads) per kind of teacher and student."""
        tr, obj = self.config.translation, self.config.objectives
        maps, rules = {}, {}
        for k in KINDS:
            rule = tr.layer_map(k, layer_rule)
            try:
                maps[k] = mapping.layer_map(rule, teacher[k][0], student[k][0])
                rules[k] = mapping.resolve_head_rule(tr.head_rule(k, obj.head_rule), teacher[k][1], student[k][1])
            except ConfigError as e:
                raise ConfigError(f"{KIND_NAMES[k]}: {e} (translation.layer_map_{k} / head_rule_{k})") from None
        self.maps, self.rules = maps, rules
        self.shapes = {k: (tuple(teacher[k]), tuple(student[k])) for k in KINDS}

    def map_layers(self, data: TranslationData, teacher: nn.Module, student: nn.Module, layer_rule) -> LayerPlan:
        """Each kind's teacher layer per student layer; the plan the session keeps is the cross-attention's."""
        t_shape, s_shape = kinds_shape(teacher), kinds_shape(student)
        self._plan(t_shape, s_shape, layer_rule)
        return LayerPlan(t_shape["cross"], s_shape["cross"], self.maps["cross"])

    def modality(self, data: TranslationData, student: nn.Module) -> TranslationModality:
        t = data.teacher
        tr = self.config.translation
        m = TranslationModality(t.tokenizer, data.splits, self.config.data.max_length,
                                t.model.config.decoder_start_token_id, beam=tr.beam, poor_bleu=tr.poor_bleu)
        m.teacher = t.model
        data.modality = m
        return m

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    def teacher_source(self, teacher, modality: TranslationModality, device, layers, head_rule, student_heads, needs,
                       progress) -> tuple[TranslationTeacherOutputs, None]:
        """The teacher's outputs per batch (logits and maps), and its translations of the training sources computed
        once and cached (when a variant uses seq_kd)."""
        used = self.used()
        need_logits = any(TEACHER_LOGITS in OBJECTIVES[n].needs for n in used if n != SEQ_KD)
        kinds = {k: (self.maps[k], self.rules[k], self.shapes[k][1][1]) for k in self.kinds_used()} \
            if ATTENTION in needs else {}
        translations = None
        if SEQ_KD in used:
            data = modality.splits.fingerprint + ":train"
            translations, hit = teacher_translations(teacher, modality.ids["train"], data, device,
                                                     modality.max_length, progress=progress)
            self._seq_cached = hit
        conf = teacher.model.config
        return TranslationTeacherOutputs(teacher.model, kinds, need_logits, translations,
                                         int(conf.decoder_start_token_id), modality.pad_id, device,
                                         self.config.train.mixed_precision), None

    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule, progress):
        raise ConfigError(f"a translation session learns from one teacher: {name} {REFUSED}")

    def ensemble_source(self, sources: list, combine, attention: str):
        raise ConfigError(f"an ensemble of teachers {REFUSED}")

    def student_forward(self, prepared):
        """The student on a batch with teacher forcing: its logits (B, Tt, V), each used kind's attention on its
        layers reduced to the compared heads (when the variant reads attention), and a second decoder pass on other
        targets (the teacher's translations) that reuses this pass's encoder output, run when seq_kd asks."""
        kinds = {k: (list(range(len(self.maps[k]))), self.rules[k]) for k in self.kinds_used()}

        def forward(model, batch: Batch, needs: frozenset, ctx, embeds=None) -> StudentOutputs:
            if embeds is not None:
                raise ConfigError(f"adversarial steps {REFUSED}")
            read = bool(kinds) and ATTENTION in needs
            set_attention_backend(model, eager=read)
            att = {}
            if read:
                with KindsCapture(model, {k: layers for k, (layers, _) in kinds.items()}) as cap:
                    out = model(**batch.inputs)
                    maps = cap.pop()
                att = {k: mapping.adapt_student(maps[k].float(), rule) for k, (_, rule) in kinds.items()}
            else:
                out = model(**batch.inputs)
            encoded = out.encoder_last_hidden_state

            def seq_forward(target: dict) -> torch.Tensor:
                with autocast_for(ctx.device, ctx.mixed_precision):
                    return model(encoder_outputs=(encoded,), attention_mask=batch.inputs["attention_mask"],
                                 decoder_input_ids=target["decoder_input_ids"],
                                 decoder_attention_mask=target["decoder_attention_mask"]).logits
            return StudentOutputs(out.logits, attention=att.get("cross"),
                                  extra={"attention": att, "seq_forward": seq_forward})
        return forward

    def probe_divergence(self, prepared, teacher_maps, student_maps) -> tuple[dict, dict]:
        """Every kind's metrics on the probe pairs (maps of queries x keys, the cross-attention's not square), and
        the cross-attention's as the primary ones."""
        kinds = {}
        for k in KINDS:
            pairs = [(t, s) for s, t in enumerate(self.maps[k])]
            kinds[k] = probe_kind_metrics(teacher_maps[k], student_maps[k], pairs, self.rules[k],
                                          self.shapes[k][1][1])
        return kinds["cross"], kinds

    # ---- generated data, notices, robustness --------------------------------------------------------------
    def generate(self, session, prepared) -> None:
        raise ConfigError(f"generated data {REFUSED}")

    def teacher_notices(self, p) -> list[str]:
        """How the teacher was prepared, its validation scores, and a warning when it translates poorly."""
        t, tr = p.teacher, self.config.translation
        fit = t.fit or {}
        out = []
        curve = fit.get("curve") or []
        kept = next((c for c in curve if c.get("epoch") == fit.get("kept_epoch")), None)
        if curve:
            shape = fit.get("shape")
            what = (f"the translation teacher ({shape['layers']} + {shape['layers']} layers, {shape['heads']} heads, "
                    f"{shape['hidden']} wide, {shape['vocab']:,} shared {shape['tokenizer'].upper()} subwords) was "
                    f"trained here" if shape else f"the teacher {self.config.teacher.source} was fine-tuned")
            chrf = ", ".join(f"{c['val_accuracy']:.1%}" for c in curve if c.get("val_accuracy") is not None)
            out.append(f"{what} on {fit.get('examples', 0):,} pairs for {fit.get('epochs_run')} of up to "
                       f"{fit.get('epochs_planned')} epochs (validation chrF by epoch: {chrf}); epoch "
                       f"{fit.get('kept_epoch')} was kept (validation BLEU {kept.get('val_bleu', 0):.1f})"
                       + (f", {fit['seconds']:.0f} s once, cached for later sessions" if not t.cached else ""))
            bleu = kept.get("val_bleu") if kept else None
        else:
            out.append(f"the teacher {self.config.teacher.source} translates as it is (not fine-tuned on these pairs; "
                       f"teacher.finetune always fine-tunes it)")
            bleu = p.modality.predict(t.model, "val", p.device, self.config.train.mixed_precision)["details"]["bleu"]
        if bleu is not None and bleu < tr.poor_bleu:
            out.append(poor_teacher_warning(bleu, tr.poor_bleu, "val"))
        if getattr(self, "_seq_cached", None) is not None:
            out.append("the teacher's translations of the training sources (sequence-level KD) "
                       + ("came from the cache" if self._seq_cached else "were computed once and cached"))
        return out

    def pairing_notices(self, p) -> list[str]:
        if not self.kinds_used():
            return []
        parts = []
        for k in self.kinds_used():
            (tl, th), (_, sh) = self.shapes[k]
            layers = ", ".join(f"{s + 1} → {t + 1}" for s, t in enumerate(self.maps[k]))
            parts.append(f"{KIND_NAMES[k]} by student → teacher layer {layers} (of {tl}), heads {self.rules[k]} "
                         f"({th} teacher, {sh} student)")
        return ["the attention losses compare the " + "; the ".join(parts)]

    def probe_extra(self, p) -> dict:
        """Every kind's pairing (probe.json "attention_kinds"), the cross-attention's head rule as the run's, and
        the teacher's translation of each probe source."""
        m: TranslationModality = p.modality
        kinds = {}
        for k in KINDS:
            (tl, th), (sl, sh) = self.shapes[k]
            query, key = KIND_AXES[k]
            kinds[k] = {"pairs": [[t, s] for s, t in enumerate(self.maps[k])], "head_rule": self.rules[k],
                        "teacher_shape": [tl, th], "student_shape": [sl, sh], "query": query, "key": key,
                        "name": KIND_NAMES[k], "compared": k in self.kinds_used()}
        teacher_probe = m.translations_of(p.teacher_model, m.probe_sources, p.device)
        return {"head_rule": self.rules["cross"], "attention_kinds": kinds,
                "translations": {"teacher": teacher_probe},
                "translation": {"languages": list(m.splits.languages), "data": m.splits.name, "beam": m.beam,
                                "vocab_size": len(m.tokenizer), "student": self.student_shape(),
                                "seq_kd_cached": getattr(self, "_seq_cached", None)}}

    def robustness(self, models: dict, modality, device, progress) -> dict:
        raise ConfigError(f"the robustness measure (attacks on the word embeddings against a class) {REFUSED}")

    # ---- a finished run, reopened -------------------------------------------------------------------------
    @classmethod
    def reopen_reader(cls, finished):
        """The tokenizer the run kept (models/tokenizer), else the teacher's."""
        folder = finished.run.reader_dir(cls.saved_as)
        source = folder if folder.is_dir() else finished.teacher_path()
        try:
            return AutoTokenizer.from_pretrained(str(source), local_files_only=True, trust_remote_code=False)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer of run {finished.run.id} from {source}: {e}") from None

    @classmethod
    def reopen_splits(cls, config) -> TranslationSplits:
        return load_translation_splits(config.data, config.translation)

    @classmethod
    def reopen_modality(cls, finished, splits) -> TranslationModality:
        """The validation, test and probe pairs of a finished run (the training pairs are not encoded)."""
        folder = finished.run.reader_dir(cls.saved_as)
        try:
            saved = json.loads((folder / MODALITY_FILE).read_text())
        except (OSError, ValueError):
            saved = {}
        start = saved.get("decoder_start_token_id")
        if start is None:
            conf = finished.teacher_path() / "config.json"
            try:
                start = json.loads(conf.read_text())["decoder_start_token_id"]
            except (OSError, ValueError, KeyError):
                raise ModelError(f"run {finished.run.id} keeps neither {MODALITY_FILE} nor its teacher: its "
                                 f"translations cannot be scored again; rerun the session") from None
        cfg = finished.config
        return TranslationModality(finished.reader(), splits, cfg.data.max_length, start,
                                   beam=cfg.translation.beam, poor_bleu=cfg.translation.poor_bleu, encode_train=False)

    @staticmethod
    def load_model(folder) -> nn.Module:
        """A Marian model a session wrote: safetensors weights only, local files only, never remote code."""
        return load_marian(str(folder))
