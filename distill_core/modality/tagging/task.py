"""Token tagging (named entities) as a session sees it: sentences split into words with a BIO tag each, the teacher's
encoder with a token-classification head (fine-tuned here once and cached), students built from a shape as token
classifiers of the teacher's family, and the teacher's per-token outputs on the training sentences computed once
and kept on disk.

Each word is scored on its first sub-token (modality.py); the score is entity-level F1 (scores.py). The losses are
those of text classification: ce, logit_kd and hard_kd per scored token, and the attention and hidden-state losses
over the real tokens of each sentence as for text. One teacher per session: generated data, adversarial steps,
robustness curves and several teachers are built for one label per input and refused."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import AutoTokenizer

from ...errors import ConfigError, ModelError
from ...objectives import ATTENTION, ATTENTION_SCORES, HIDDEN
from ..base import Task
from ..text.students import EncoderStudents
from .data import TagSplits, load_tag_splits, tagging_max_length, without_training
from .modality import TaggingModality
from .models import build_tagging_student, load_tagging_model, load_word_tokenizer
from .outputs import TokenOutputsSource, cached_token_outputs
from .teacher import prepare_tagging_teacher

ONE_LABEL_PER_INPUT = "is built for text classification and images (one label per input)"


@dataclass
class TaggingData:
    modality: TaggingModality


class TaggingTask(EncoderStudents, Task):
    kind = "tagging"
    padded_maps = True
    suggests_layers = False         # a suggested layer map is read from earlier text classification runs
    saved_as = TaggingModality.saved_as
    data_word, data_pronoun = "tagged sentences", "them"

    # ---- data and teachers --------------------------------------------------------------------------------
    def load_data(self) -> TaggingData:
        """Read, check and split the sentences, and split their words into the teacher's sub-tokens, once."""
        cfg = self.config
        splits = load_tag_splits(cfg.data, cfg.tagging)
        tokenizer = load_word_tokenizer(cfg.teacher.source)
        return TaggingData(TaggingModality(tokenizer, splits, tagging_max_length(cfg.data, cfg.tagging)))

    def check_teacher_configs(self, data: TaggingData, configs: list) -> None:
        """One teacher: several teachers' answers are combined per input, which is built for one label per input."""
        if len(configs) > 1:
            raise ConfigError(f"a tagging session learns from one teacher: several teachers (ensemble.teachers) "
                              f"{ONE_LABEL_PER_INPUT}; remove ensemble.teachers")

    def prepare_teacher(self, config, data: TaggingData, device, progress):
        m = data.modality
        return prepare_tagging_teacher(config, m, device, progress)

    # ---- the student (EncoderStudents): a token classifier -----------------------------------------------------
    def new_student(self, modality: TaggingModality, teacher: nn.Module, init_layers, init) -> nn.Module:
        return build_tagging_student(self.config.student, teacher, modality.splits.tag_names, init_layers, init)

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    def teacher_source(self, teacher, modality: TaggingModality, device, layers, head_rule, student_heads, needs,
                       progress) -> tuple[TokenOutputsSource, bool]:
        """The teacher's per-token logits (and mapped attention, its scores, hidden states as `needs` asks) on the
        training sentences, computed once and cached on disk."""
        cfg = self.config
        need = {"attention": ATTENTION in needs, "hidden": HIDDEN in needs, "scores": ATTENTION_SCORES in needs}
        out, hit = cached_token_outputs(
            teacher, modality.ids["train"], modality.pad_id, device, layers, head_rule, student_heads, need,
            key_parts={"data": modality.splits.fingerprint + ":train", "max_length": modality.max_length},
            batch_size=max(cfg.train.batch_size, 64), mixed_precision=cfg.train.mixed_precision, progress=progress)
        return TokenOutputsSource(out, device), hit

    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule, progress):
        raise ConfigError(f"{name}: a tagging session learns from one teacher; several teachers "
                          f"{ONE_LABEL_PER_INPUT}")

    def ensemble_source(self, sources: list, combine, attention: str):
        raise ConfigError(f"a tagging session learns from one teacher; an ensemble of teachers {ONE_LABEL_PER_INPUT}")

    # ---- generated data, notices, robustness --------------------------------------------------------------
    def generate(self, session, prepared) -> None:
        raise ConfigError(f"generated transfer data {ONE_LABEL_PER_INPUT}; remove generated and transfer_labels "
                          f"from the variants of a tagging session")

    def teacher_notices(self, p) -> list[str]:
        fit = p.teacher.fit
        if not (fit and fit.get("curve")):
            return []
        curve = ", ".join(f"{c['val_accuracy']:.1%}" for c in fit["curve"])
        lr = f" at learning rate {fit['lr']:g}" if fit.get("lr") else ""
        return [f"the teacher was fine-tuned as a tagger on {fit['examples']:,} sentences for {fit['epochs_run']} of "
                f"up to {fit['epochs_planned']} epochs{lr} (validation entity F1 by epoch: {curve}); epoch "
                f"{fit['kept_epoch']} was kept" + (f", {fit['seconds']:.0f} s once, cached for later sessions"
                                                   if not p.teacher.cached else "")]

    def robustness(self, models: dict, modality: TaggingModality, device, progress) -> dict:
        raise ConfigError(f"robustness curves (an attack on each input's one label) {ONE_LABEL_PER_INPUT}; a "
                          f"tagging session has none")

    # ---- a finished run, reopened -------------------------------------------------------------------------
    @classmethod
    def input_length(cls, config) -> int:
        return tagging_max_length(config.data, config.tagging)

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
    def reopen_splits(cls, config) -> TagSplits:
        return load_tag_splits(config.data, config.tagging)

    @classmethod
    def reopen_modality(cls, finished, splits: TagSplits) -> TaggingModality:
        # only validation and test are read when a run is measured again: the training sentences are not encoded
        cfg = finished.config
        return TaggingModality(finished.reader(), without_training(splits), tagging_max_length(cfg.data, cfg.tagging))

    @staticmethod
    def load_model(folder) -> nn.Module:
        """A token classifier with eager attention: safetensors weights only, local files only, never remote code."""
        return load_tagging_model(folder)
