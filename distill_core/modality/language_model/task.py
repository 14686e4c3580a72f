"""A causal language model as a session sees it: passages of plain text split by passage, a GPT-style teacher (a
GPT-2 model trained here once and cached, or a causal model folder / hub id), smaller GPT-2 students sharing its
tokenizer, the teacher run on every batch (its next-token distributions over thousands of subwords are too large to
keep for every training token), its own continuations sampled once for sequence-level KD, the student's own samples
drawn during training for on-policy distillation, and causal self-attention compared over the lower triangle."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from torch import nn

from ... import mapping
from ...capture import AttentionCapture
from ...config import StudentConfig, resolve_init
from ...errors import ConfigError, DataError, ModelError
from ...evaluate import autocast_for
from ...models import project_token_embeddings, resolve_source, set_attention_backend
from ...objectives import ATTENTION, HIDDEN, OBJECTIVES, TEACHER_LOGITS
from ...sources import source_kind
from ...teacher import PreparedTeacher
from ..base import INIT_LOCK, Batch, LayerPlan, StudentOutputs, Task, TeacherBatch
from ..translation.divergence import probe_kind_metrics
from ..translation.tokenizer import same_vocabulary
from .data import LMSplits, load_lm_splits
from .modality import MODALITY_FILE, LMModality, block_inputs
from .models import copy_teacher_layers, load_causal_lm, shape_of, student_from
from .sampling import sample
from .teacher import load_teacher_tokenizer, prepare_lm_teacher, teacher_samples

# The student a language-model session builds while the student section keeps the classification defaults (3
# layers, 4 heads, 192 wide: wider than the built-in teacher): 2 layers, 4 heads, 96 wide, 384 feed-forward.
DEFAULT_STUDENT = {"layers": 2, "heads": 4, "hidden": 96, "intermediate": 384}
REFUSED = "is built for text classification and images, not for language models"
MIN_BLOCKS = 4          # the training text must fill at least this many blocks of the context length
SEQ_KD, ON_POLICY = "seq_kd", "on_policy"


@dataclass
class LMData:
    splits: LMSplits
    teacher: PreparedTeacher | None = None
    modality: LMModality | None = None
    notices: list[str] = field(default_factory=list)


class LMTeacherOutputs:
    """The teacher's outputs on each training batch: next-token logits (B, T, V), the mapped layers' causal attention
    reduced to the compared heads, their hidden states, and its own continuation of each block's opening
    (sequence-level KD) as model inputs and labels."""

    def __init__(self, model, layers: list[int], rule: str, heads: int, need_logits: bool, need_attention: bool,
                 need_hidden: bool, samples: list[list[int]] | None, pad: int, device, mixed_precision: bool):
        self.model, self.layers, self.rule, self.heads = model, layers, rule, heads
        self.need_logits, self.need_attention, self.need_hidden = need_logits, need_attention, need_hidden
        self.samples, self.pad = samples, pad
        self.device, self.mixed_precision = torch.device(device), mixed_precision

    @torch.no_grad()
    def __call__(self, batch: Batch) -> TeacherBatch:
        out = TeacherBatch()
        if self.need_logits or self.need_attention or self.need_hidden:
            self.model.eval()
            set_attention_backend(self.model, eager=self.need_attention)
            with autocast_for(self.device, self.mixed_precision):
                if self.need_attention:
                    with AttentionCapture(self.model, self.layers) as cap:
                        res = self.model(**batch.inputs, output_hidden_states=self.need_hidden)
                        out.attention = mapping.adapt_teacher(cap.pop_stacked().float(), self.rule, self.heads)
                else:
                    res = self.model(**batch.inputs, output_hidden_states=self.need_hidden)
            if self.need_logits:
                out.logits = res.logits.float()
            if self.need_hidden:
                out.hidden = torch.stack([res.hidden_states[t + 1].float() for t in self.layers], 1)
        if self.samples is not None:
            out.extra["seq_kd"] = block_inputs([self.samples[i] for i in batch.index], self.pad, self.device)
        return out


class LanguageModelTask(Task):
    kind = "language_model"
    padded_maps = True
    suggests_layers = False
    saved_as = LMModality.saved_as
    data_word, data_pronoun = "passages", "them"

    # ---- what the variants use ----------------------------------------------------------------------------------
    def used(self) -> set[str]:
        return {n for vc in self.config.variants for n, w in vc.losses.items() if w > 0}

    def student_shape(self) -> dict:
        s, d = self.config.student, StudentConfig()
        if (s.layers, s.heads, s.hidden, s.intermediate) == (d.layers, d.heads, d.hidden, d.intermediate):
            return dict(DEFAULT_STUDENT)
        return {"layers": s.layers, "heads": s.heads, "hidden": s.hidden, "intermediate": s.intermediate}

    # ---- data and teachers --------------------------------------------------------------------------------
    def load_data(self) -> LMData:
        """The passages, split by passage; a training text too short for the context is refused before any
        training."""
        splits = load_lm_splits(self.config.data, self.config.language_model)
        context = self.config.data.max_length
        words = sum(len(t.split()) for t in splits.train)
        if words < MIN_BLOCKS * (context + 1) // 2:
            raise DataError(self._too_short(f"{words:,} words", context))
        return LMData(splits)

    def _too_short(self, held: str, context: int) -> str:
        fit = max(8, context // 4)
        return (f"the training text is too short for the context length: it holds {held}, and a language model "
                f"learns from blocks of {context} tokens (data.max_length), at least {MIN_BLOCKS} of them. Add text "
                f"(a longer file, or more rows), or lower data.max_length (e.g. to {fit})")

    def check_teacher_configs(self, data: LMData, configs: list) -> None:
        if len(configs) > 1:
            raise ConfigError(f"a language-model session learns from one teacher: several teachers "
                              f"(ensemble.teachers) {REFUSED}; remove ensemble.teachers")
        cfg = self.config
        if cfg.teacher.source == "default" and not cfg.student.source:
            lm, s = cfg.language_model, self.student_shape()
            mapping.layer_map(cfg.objectives.layer_map if cfg.objectives.layer_map != "suggested" else "uniform",
                              lm.teacher_layers, s["layers"])
            if self.used() & {"causal_attention_kl"}:
                mapping.resolve_head_rule(cfg.objectives.head_rule, lm.teacher_heads, s["heads"])

    def prepare_teacher(self, config, data: LMData, device, progress) -> PreparedTeacher:
        t = prepare_lm_teacher(config, data.splits, device, progress)
        data.teacher = t
        return t

    def shape(self, model: nn.Module) -> tuple[int, int]:
        s = shape_of(model)
        return s["layers"], s["heads"]

    # ---- the student --------------------------------------------------------------------------------------
    def initial_student(self, data: LMData, teacher: nn.Module, layer_rule) -> tuple[nn.Module, str]:
        """student.source (a causal model that must read the teacher's tokens), or a smaller GPT-2 model of the
        teacher's vocabulary from the student's shape (seeded by train.seed), started at random, from alternate
        teacher layers (DistilGPT2; widths equal) or from its projected embeddings, as student.init says."""
        cfg, s = self.config, self.config.student
        if s.source:
            return self._pretrained_student(data, s.source), "pretrained"
        shape = self.student_shape()
        t = shape_of(teacher)
        same = (shape["hidden"], shape["heads"]) == (t["hidden"], t["heads"]) and \
            (shape["intermediate"] or 4 * shape["hidden"]) == t["intermediate"]
        # auto starts a language-model student from the teacher's knowledge whatever the text's size (its layers
        # when the widths match, as DistilGPT2 was, else its projected embeddings): on the default text, after the
        # default epoch, a labels-only student started at random reached a test perplexity of 119 (seed 0), one
        # started from the teacher's embeddings 60 (README › Results › Language model)
        init = resolve_init(s.init, 0, same, can_project=shape["hidden"] <= t["hidden"])
        if init == "from_teacher" and not same:
            raise ConfigError(f"student.init 'from_teacher' copies the teacher's layers, which needs its widths: "
                              f"hidden {t['hidden']}, heads {t['heads']}, intermediate {t['intermediate']}; use init "
                              f"'random' or 'teacher_embeddings'")
        with INIT_LOCK:
            torch.manual_seed(cfg.train.seed)
            student = student_from(teacher, shape["layers"], shape["heads"], shape["hidden"], shape["intermediate"],
                                   s.dropout)
            if init == "from_teacher":
                layers = list(s.init_layers) if s.init_layers else mapping.layer_map(
                    "uniform" if layer_rule == "suggested" else layer_rule, t["layers"], shape["layers"])
                copy_teacher_layers(student, teacher, layers)
            elif init == "teacher_embeddings":
                project_token_embeddings(student, teacher)
        return student, init

    def _pretrained_student(self, data: LMData, source: str) -> nn.Module:
        path, local = resolve_source(source)
        if source_kind(source, "model") == "hub":
            from ...hub import require_online
            require_online(f"student {source!r}")
        student = load_causal_lm(path, local_only=local)
        tok = load_teacher_tokenizer(path, local)
        if not same_vocabulary(data.teacher.tokenizer, tok):
            raise ConfigError(f"student {source} splits text into other tokens than the teacher "
                              f"({self.config.teacher.source}): a language-model student learns the teacher's "
                              f"next-token distributions token by token, so it must share the teacher's tokenizer. "
                              f"Leave student.source empty to build a student of the teacher's vocabulary from "
                              f"student.layers, heads and hidden, or pick a student of the teacher's family (for "
                              f"gpt2, distilgpt2)")
        return student

    def map_layers(self, data: LMData, teacher: nn.Module, student: nn.Module, layer_rule) -> LayerPlan:
        t, s = self.shape(teacher), self.shape(student)
        rule = "uniform" if layer_rule == "suggested" else layer_rule
        return LayerPlan(t, s, mapping.layer_map(rule, t[0], s[0]))

    def modality(self, data: LMData, student: nn.Module) -> LMModality:
        t = data.teacher
        context = self.config.data.max_length
        limit = shape_of(t.model)["context"]
        if limit and context > limit:
            raise ConfigError(f"data.max_length ({context}) is longer than the teacher reads ({limit} positions); "
                              f"set data.max_length to {limit} or less")
        lm = self.config.language_model
        m = LMModality(t.tokenizer, data.splits, context, samples=lm.samples, sample_temperature=lm.sample_temperature)
        if m.size("train") < MIN_BLOCKS:
            raise DataError(self._too_short(f"{m.tokens('train'):,} tokens", context))
        if not m.blocks["val"] or not m.blocks["test"]:
            raise DataError("the validation or test passages hold no token to predict; add text")
        m.teacher = t.model
        data.modality = m
        return m

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    def teacher_source(self, teacher, modality: LMModality, device, layers, head_rule, student_heads, needs,
                       progress) -> tuple[LMTeacherOutputs, None]:
        used = self.used()
        need_logits = any(TEACHER_LOGITS in OBJECTIVES[n].needs for n in used if n != SEQ_KD)
        samples = None
        lm = self.config.language_model
        if SEQ_KD in used:
            prompt = min(lm.prompt_tokens, modality.context - 1)
            samples, hit = teacher_samples(teacher, modality.blocks["train"], prompt,
                                           min(modality.context, prompt + lm.sample_tokens),
                                           self.config.teacher.seed, lm.sample_temperature, device,
                                           progress=progress)
            self._samples_cached = hit
        return LMTeacherOutputs(teacher.model, list(layers), head_rule, student_heads, need_logits,
                                ATTENTION in needs, HIDDEN in needs, samples, modality.pad_id, device,
                                self.config.train.mixed_precision), None

    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule, progress):
        raise ConfigError(f"a language-model session learns from one teacher: {name} {REFUSED}")

    def ensemble_source(self, sources: list, combine, attention: str):
        raise ConfigError(f"an ensemble of teachers {REFUSED}")

    def student_forward(self, prepared):
        """The student on a batch: its logits (B, T, V), the mapped layers' attention reduced to the compared heads
        and their hidden states (when the variant reads them); a pass on other blocks (the teacher's samples) for
        seq_kd; and, for on_policy, a sampler that on a share lambda of the steps lets the student continue each
        block's opening (seeded from the variant's stream), then runs the student and the teacher on what it
        wrote."""
        lm = self.config.language_model
        teacher = prepared.teacher_model
        tok = prepared.modality.tokenizer
        eos, pad = tok.eos_token_id, prepared.modality.pad_id
        prompt = min(lm.prompt_tokens, prepared.modality.context - 1)

        def forward(model, batch: Batch, needs: frozenset, ctx, embeds=None) -> StudentOutputs:
            if embeds is not None:
                raise ConfigError(f"adversarial steps {REFUSED}")
            read_att, read_hid = ATTENTION in needs, HIDDEN in needs
            set_attention_backend(model, eager=read_att)
            att = hid = None
            if read_att:
                with AttentionCapture(model, ctx.student_layers) as cap:
                    out = model(**batch.inputs, output_hidden_states=read_hid)
                    att = mapping.adapt_student(cap.pop_stacked().float(), ctx.head_rule)
            else:
                out = model(**batch.inputs, output_hidden_states=read_hid)
            if read_hid:
                hid = torch.stack([out.hidden_states[s + 1] for s in ctx.student_layers], 1)

            def seq_forward(target: dict) -> torch.Tensor:
                with autocast_for(ctx.device, ctx.mixed_precision):
                    return model(input_ids=target["input_ids"], attention_mask=target["attention_mask"]).logits

            def on_policy() -> dict | None:
                if float(torch.rand(())) >= lm.on_policy_fraction:
                    return None
                seed = int(torch.randint(0, 2 ** 31 - 1, ()))
                ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
                prompts = [ids[j, :min(prompt, int(mask[j].sum()))].tolist() for j in range(ids.shape[0])]
                prompts = [p if p else [eos] for p in prompts]
                new = sample(model, prompts, min(lm.sample_tokens, prepared.modality.context - prompt), seed=seed,
                             temperature=lm.sample_temperature, eos=eos, pad=pad, device=ctx.device)
                rows = [p + r for p, r in zip(prompts, new)]
                inputs = block_inputs([r + [pad] for r in rows], pad, ctx.device)
                drawn = torch.zeros_like(inputs["attention_mask"])
                for j, (p, r) in enumerate(zip(prompts, new)):
                    drawn[j, len(p) - 1:len(p) - 1 + len(r)] = 1          # the positions that predicted a sample
                set_attention_backend(model, eager=False)
                with autocast_for(ctx.device, ctx.mixed_precision):
                    s_logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
                    with torch.no_grad():
                        teacher.eval()
                        set_attention_backend(teacher, eager=False)
                        t_logits = teacher(input_ids=inputs["input_ids"],
                                           attention_mask=inputs["attention_mask"]).logits
                return {"student_logits": s_logits, "teacher_logits": t_logits, "mask": drawn}
            extra = {"beta": lm.beta, "seq_forward": seq_forward, "sample_on_policy": on_policy}
            return StudentOutputs(out.logits, attention=att, hidden=hid, extra=extra)
        return forward

    def probe_divergence(self, prepared, teacher_maps, student_maps) -> tuple[dict, dict]:
        p = prepared
        return probe_kind_metrics(teacher_maps, student_maps, p.pairs, p.head_rule, p.student_shape[1],
                                  causal=True), {}

    # ---- generated data, notices, robustness --------------------------------------------------------------
    def generate(self, session, prepared) -> None:
        raise ConfigError(f"generated data {REFUSED}")

    def auto_init_reason(self, train_examples: int) -> str:
        return "as for every language model (a student started at random learns much slower in a short session),"

    def teacher_notices(self, p) -> list[str]:
        t = p.teacher
        fit = t.fit or {}
        curve = fit.get("curve") or []
        out = []
        if curve:
            shape = fit.get("shape")
            what = (f"the language-model teacher (GPT-2, {shape['layers']} layers, {shape['heads']} heads, "
                    f"{shape['hidden']} wide, {shape['vocab']:,} {shape['tokenizer'].upper()} subwords) was trained "
                    f"here" if shape else f"the teacher {self.config.teacher.source} was fine-tuned")
            ppl = ", ".join(f"{c['val_perplexity']:.1f}" for c in curve if c.get("val_perplexity") is not None)
            out.append(f"{what} on {fit.get('tokens', 0):,} tokens for {fit.get('epochs_run')} of up to "
                       f"{fit.get('epochs_planned')} epochs (validation perplexity by epoch: {ppl}); epoch "
                       f"{fit.get('kept_epoch')} was kept"
                       + (f", {fit['seconds']:.0f} s once, cached for later sessions" if not t.cached else ""))
        else:
            out.append(f"the teacher {self.config.teacher.source} is used as it is (not fine-tuned on this text; "
                       f"teacher.finetune always fine-tunes it)")
        if getattr(self, "_samples_cached", None) is not None:
            out.append("the teacher's continuations of the training blocks (sequence-level KD) "
                       + ("came from the cache" if self._samples_cached else "were sampled once and cached"))
        return out

    def pairing_notices(self, p) -> list[str]:
        if not (self.used() & {"causal_attention_kl", "hidden_mse"}):
            return []
        (tl, th), (_, sh) = p.teacher_shape, p.student_shape
        layers = ", ".join(f"{s + 1} → {t + 1}" for t, s in p.pairs)
        return [f"the attention and hidden-state losses compare student → teacher layer {layers} (of {tl}); causal "
                f"attention heads {p.head_rule} ({th} teacher, {sh} student), over the lower triangle only"]

    def probe_extra(self, p) -> dict:
        """The language model's settings (the fixed prompts are in the probe record; each model's continuations in
        summary.json's details)."""
        m: LMModality = p.modality
        lm = self.config.language_model
        return {"language_model": {"context": m.context, "vocab_size": len(m.tokenizer), "data": m.splits.name,
                                   "student": self.student_shape(), "beta": lm.beta,
                                   "on_policy_fraction": lm.on_policy_fraction, "temperature": lm.temperature,
                                   "prompt_tokens": lm.prompt_tokens, "sample_temperature": lm.sample_temperature,
                                   "samples_cached": getattr(self, "_samples_cached", None)}}

    def robustness(self, models: dict, modality, device, progress) -> dict:
        raise ConfigError(f"the robustness measure (attacks on the word embeddings against a class) {REFUSED}")

    # ---- a finished run, reopened -------------------------------------------------------------------------
    @classmethod
    def reopen_reader(cls, finished):
        folder = finished.run.reader_dir(cls.saved_as)
        source = folder if folder.is_dir() else finished.teacher_path()
        try:
            return load_teacher_tokenizer(str(source), local=True)
        except ModelError as e:
            raise ModelError(f"cannot load the tokenizer of run {finished.run.id} from {source}: {e}") from None

    @classmethod
    def reopen_splits(cls, config) -> LMSplits:
        return load_lm_splits(config.data, config.language_model)

    @classmethod
    def reopen_modality(cls, finished, splits) -> LMModality:
        folder = finished.run.reader_dir(cls.saved_as)
        lm = finished.config.language_model
        try:
            context = int(json.loads((folder / MODALITY_FILE).read_text())["context"])
        except (OSError, ValueError, KeyError):
            context = finished.config.data.max_length
        return LMModality(finished.reader(), splits, context, encode_train=False, samples=lm.samples,
                          sample_temperature=lm.sample_temperature)

    @staticmethod
    def load_model(folder) -> nn.Module:
        return load_causal_lm(str(folder))
