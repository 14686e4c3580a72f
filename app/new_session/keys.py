"""The New session form's widget keys, all namespaced "new.": the text task's under new.*, the image task's under
new.img.*, token tagging's under new.tag.*, translation's under new.mt.*, the language model's under new.lm.*, the
variant blocks under new.v<i>.* (text), new.iv<i>.* (images), new.tv<i>.* (tagging), new.mv<i>.* (translation) and
new.lv<i>.* (language model). AppTest and the browser test find the widgets by these keys, so they never change."""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.state import STARTED_HERE
from distill_core.objectives import TEXT_LOSS_NAMES, loss_names_for

NEW = "new."                                # every key of the page
IMG = "new.img."                            # the image form's widget keys
TAG = "new.tag."                            # the token-tagging form's widget keys
MT = "new.mt."                              # the translation form's widget keys
LM = "new.lm."                              # the language-model form's widget keys
TEXT_TASK, IMAGE_TASK = "text", "image"     # SessionConfig.modality: the kinds of task the form builds
TAGGING_TASK, TRANSLATION_TASK, LANGUAGE_MODEL_TASK = "tagging", "translation", "language_model"
MODALITY = "new.modality"                   # which task the form shows
SAVED = "new._saved"                        # widget values kept while the user visits other pages
ACTIVE_RUN = STARTED_HERE                   # the run this browser tab started (app/state.py: the pages offer it)
NAME, SEEDS = "new.name", "new.seeds"
# shared by both tasks: from the defaults whichever their modality
SCHEDULE, TIME_BUDGET, SEED, DEVICE = "new.schedule", "new.time_budget", "new.seed", "new.device"
UPLOAD_PATH, UPLOAD_SIG = "new.upload_path", "new.upload_sig"
IMAGE_UPLOAD_PATH, IMAGE_UPLOAD_SIG = "new.img.upload_path", "new.img.upload_sig"
FILE_TEXT_COLUMN, FILE_LABEL_COLUMN = "new.file_text_column", "new.file_label_column"
TAG_UPLOAD_PATH, TAG_UPLOAD_SIG = "new.tag.upload_path", "new.tag.upload_sig"
MT_UPLOAD_PATH, MT_UPLOAD_SIG = "new.mt.upload_path", "new.mt.upload_sig"
MT_FILE_SOURCE_COLUMN, MT_FILE_TARGET_COLUMN = "new.mt.file_source_column", "new.mt.file_target_column"
LM_UPLOAD_PATH, LM_UPLOAD_SIG = "new.lm.upload_path", "new.lm.upload_sig"
LM_FILE_TEXT_COLUMN = "new.lm.file_text_column"
FAMILIES = "new.img.families"               # (teacher, student) families the image variants were last drawn for
FAMILY_NOTE = "new.img.family_note"         # what a change of family did to edited variants
VARIANT_IDS, NEXT_ID = "new.variant_ids", "new.next_variant_id"     # stable ids of the variant blocks, in order
VARIANT_KEY_RE = re.compile(r"^new\.[itml]?v\d+\.")

STRATEGY_KEYS = ("preset", "auto_weights", "temp_schedule", "temp_low", "temp_high", "attention_focus", "adv_method",
                 "adv_epsilon", "adv_steps", "adv_step_size", "adv_weight", "adv_start", "generated", "transfer_labels",
                 "teacher")
# adversarial training and generated data are built for text only; "teacher": whom the variant learns from
IMAGE_STRATEGY_KEYS = (*STRATEGY_KEYS[:6], "teacher")
# tagging, translation and language models learn from one teacher (no ensembles), without adversarial steps or
# generated data; translation's and the language model's attention losses are their own (the TinyBERT preset and
# attention focus read a classifier's)
TAGGING_STRATEGY_KEYS = STRATEGY_KEYS[:6]
TRANSLATION_STRATEGY_KEYS = ("auto_weights", "temp_schedule", "temp_low", "temp_high")
LANGUAGE_MODEL_STRATEGY_KEYS = TRANSLATION_STRATEGY_KEYS


def value_key(key: str) -> str:
    """A widget key as the form's values name it: without the leading 'new.'."""
    return key[len(NEW):]


@dataclass(frozen=True)
class VariantSet:
    """One editor of variant blocks, the text form's or the image form's: each keeps its own blocks."""
    block: str                      # the blocks' widget keys are new.<block><i>.*
    ids: str                        # session-state key: the ids of the blocks shown, in order
    next_id: str
    losses: tuple[str, ...]         # the losses a block holds (the editor shows those the session allows)
    scheduled: tuple[str, ...]      # what a schedule can multiply
    strategies: tuple[str, ...]
    prefix: str                     # the task's keys: its Add variant button, its number of further teachers
    per_row: int                    # blocks side by side
    wide: float                     # room for the names of the losses next to their weights

    def keys(self, i: int) -> list[str]:
        """The widget keys of variant block `i`, its strategies included."""
        k = f"{NEW}{self.block}{i}."
        return [k + "name", *(f"{k}loss.{n}" for n in self.losses), *(f"{k}weight.{n}" for n in self.losses),
                *(f"{k}sched.{n}" for n in self.scheduled), *(f"{k}sched_epoch.{n}" for n in self.scheduled),
                *(k + x for x in self.strategies)]

    @property
    def ens_count(self) -> str:
        """The key of the task's number of further teachers."""
        return self.prefix + "ens_count"

    @property
    def adversarial(self) -> bool:
        """Whether its blocks offer adversarial training and generated data (built for text only)."""
        return "adv_method" in self.strategies


SCHEDULED = (*TEXT_LOSS_NAMES, "adversarial")   # what a schedule can multiply: every loss, and the adversarial loss
# the attention losses' names (attention_kl, attention_mse, attention_score_mse; the image form's
# attention_transfer) need room to be told apart: two blocks a row, the names wider than their weights
TEXT_VARIANTS = VariantSet("v", VARIANT_IDS, NEXT_ID, TEXT_LOSS_NAMES, SCHEDULED, STRATEGY_KEYS, NEW, 2, 2.4)
IMAGE_LOSS_NAMES = loss_names_for(IMAGE_TASK)
IMAGE_VARIANTS = VariantSet("iv", "new.img.variant_ids", "new.img.next_variant_id", IMAGE_LOSS_NAMES,
                            IMAGE_LOSS_NAMES, IMAGE_STRATEGY_KEYS, IMG, 2, 2.4)
TAGGING_LOSS_NAMES = loss_names_for(TAGGING_TASK)           # what each kind of task can train with
TRANSLATION_LOSS_NAMES = loss_names_for(TRANSLATION_TASK)
LANGUAGE_MODEL_LOSS_NAMES = loss_names_for(LANGUAGE_MODEL_TASK)
TAGGING_VARIANTS = VariantSet("tv", "new.tag.variant_ids", "new.tag.next_variant_id", TAGGING_LOSS_NAMES,
                              TAGGING_LOSS_NAMES, TAGGING_STRATEGY_KEYS, TAG, 2, 2.4)
TRANSLATION_VARIANTS = VariantSet("mv", "new.mt.variant_ids", "new.mt.next_variant_id", TRANSLATION_LOSS_NAMES,
                                  TRANSLATION_LOSS_NAMES, TRANSLATION_STRATEGY_KEYS, MT, 2, 2.4)
LANGUAGE_MODEL_VARIANTS = VariantSet("lv", "new.lm.variant_ids", "new.lm.next_variant_id", LANGUAGE_MODEL_LOSS_NAMES,
                                     LANGUAGE_MODEL_LOSS_NAMES, LANGUAGE_MODEL_STRATEGY_KEYS, LM, 2, 2.4)
VARIANT_SETS = (TEXT_VARIANTS, IMAGE_VARIANTS, TAGGING_VARIANTS, TRANSLATION_VARIANTS, LANGUAGE_MODEL_VARIANTS)
