"""The New session form's token tagging and translation, driven with AppTest (the language model's form is in
test_app_lm_form.py): the task picker, each task's defaults, the config the form builds, the losses each task
offers, each task keeping its values while another is shown, and a file the engine refuses shown before Start.
Nothing trains: starting is replaced by the `started` recorder (conftest)."""
from __future__ import annotations

import json
import sys

import pytest

from app.new_session import keys, tasks, values
from app_helpers import open_page, texts
from distill_core import SessionConfig
from distill_core.errors import ConfigError
from distill_core.config import tagging_default_variants, translation_default_variants
from distill_core.objectives import OBJECTIVES, loss_names_for

from test_app_session import PAGE, TIMEOUT, run_dirs

TAGGING, TRANSLATION, LANGUAGE_MODEL = keys.TAGGING_TASK, keys.TRANSLATION_TASK, keys.LANGUAGE_MODEL_TASK


def run_page():
    return open_page(PAGE, default_timeout=TIMEOUT)


def show(at, kind: str):
    at.segmented_control(key=keys.MODALITY).set_value(kind).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def start(at):
    at.button(key="new.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def block_names(at, vs: keys.VariantSet) -> list[str]:
    return [at.text_input(key=f"new.{vs.block}{i}.name").value for i in at.session_state[vs.ids]]


def offered_losses(at, vs: keys.VariantSet, i: int = 0) -> list[str]:
    prefix = f"new.{vs.block}{i}.loss."
    return [c.key[len(prefix):] for c in at.checkbox if c.key and c.key.startswith(prefix)]


def form_values(cfg: SessionConfig) -> dict:
    return {keys.value_key(k): v for k, v in tasks.initial_values(cfg).items()}


# ---- the picker ---------------------------------------------------------------------------------------------
def test_the_task_picker_offers_the_five_tasks(store):
    at = run_page()
    picker = at.segmented_control(key=keys.MODALITY)
    assert picker.options == ["Text classification", "Token tagging", "Translation", "Language model", "Images"]
    assert list(tasks.TASKS) == [keys.TEXT_TASK, TAGGING, TRANSLATION, LANGUAGE_MODEL, keys.IMAGE_TASK]
    assert picker.value == keys.TEXT_TASK
    for kind in tasks.TASKS:
        show(at, kind)
        assert tasks.TASKS[kind].intro in texts(at.caption)
        assert not at.error, texts(at.error)


# ---- tagging ------------------------------------------------------------------------------------------------
def test_tagging_shows_its_defaults_and_only_its_losses(store):
    at = show(run_page(), TAGGING)
    assert "Distil a token tagger" in texts(at.caption)
    assert "first sub-token" in texts(at.caption)
    assert at.radio(key="new.tag.teacher_kind").value == "default"
    assert at.radio(key="new.tag.data_kind").value == "default"
    assert "2,394 tweets" in texts(at.caption)
    tg = SessionConfig().tagging
    assert [at.number_input(key=f"new.tag.{k}").value for k in ("train_size", "val_size", "test_size", "max_length")] \
        == [tg.train_size, tg.val_size, tg.test_size, tg.max_length]
    assert (at.number_input(key="new.tag.epochs").value, at.number_input(key="new.tag.lr").value) \
        == (tg.student_epochs, tg.student_lr)                   # the task's own, not the text task's 4 at 5e-4
    assert block_names(at, keys.TAGGING_VARIANTS) == [v.name for v in tagging_default_variants()]
    allowed = list(loss_names_for(TAGGING))
    assert offered_losses(at, keys.TAGGING_VARIANTS) == allowed
    assert "attention_transfer" not in allowed
    shown = {c.key for c in at.checkbox} | {s.key for s in at.selectbox}
    for strategy in ("adv_method", "generated", "transfer_labels", "teacher"):     # built for classification
        assert not any(k and k.startswith("new.tv0.") and k.endswith(strategy) for k in shown)
    assert not [n for n in at.number_input if n.key == "new.tag.ens_count"]         # one teacher
    assert "suggested" not in at.radio(key="new.tag.layer_map_kind").options
    assert not at.error


def test_start_builds_a_tagging_session_with_its_default_variants(store, started):
    at = start(show(run_page(), TAGGING))
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.task == TAGGING and cfg.modality == TAGGING
    assert cfg.variants == tagging_default_variants()
    assert cfg.to_dict() == SessionConfig(task=TAGGING).to_dict()        # the engine's own tagging defaults
    assert cfg.tagging == SessionConfig().tagging and cfg.ensemble.teachers == ()
    assert run_dirs(store) == [at.session_state[keys.ACTIVE_RUN]]


def test_a_tagging_config_comes_back_from_its_widget_values():
    cfg = SessionConfig.from_dict({
        "task": TAGGING, "name": "tags", "teacher": {"source": "/models/ner-bert", "finetune": "always",
                                                      "finetune_epochs": 3},
        "student": {"layers": 2, "heads": 2, "hidden": 64, "intermediate": 128, "init": "random"},
        "data": {"source": "/data/tweets.conll"}, "tagging": {"train_size": 900, "val_size": 100, "test_size": 200,
                                                              "max_length": 96},
        "objectives": {"temperature": 3.0, "head_rule": "mean", "layer_map": [1, 3]},
        "train": {"epochs": 5, "batch_size": 16, "lr": 1e-3, "seed": 3, "device": "cpu"},
        "variants": [{"name": "baseline", "losses": {"ce": 1.0}},
                     {"name": "att", "losses": {"ce": 0.5, "attention_kl": 1.0}, "preset": "tinybert",
                      "auto_weights": "magnitude", "attention_focus": True}]})
    base = tasks.TASKS[TAGGING].base(SessionConfig())
    assert tasks.build_config(form_values(cfg), base) == cfg
    values = dict(form_values(cfg), **{"tag.data_kind": "hub", "tag.data_hub": "wnut_17", "tag.hub_split": "test"})
    built = tasks.build_config(values, base)
    assert (built.data.source, built.data.hub_split) == ("wnut_17", "test")


def test_a_tag_outside_bio_in_an_uploaded_file_shows_the_engines_words(store, started):
    at = show(run_page(), TAGGING)
    at.radio(key="new.tag.data_kind").set_value("upload").run()
    body = "Paris\tB-LOC\nis\tO\nbig\tO\n\nObama\tPERSON\nspoke\tO\n"
    at.file_uploader(key="new.tag.upload").set_value(("tweets.conll", body.encode(), "text/plain")).run()
    said = texts(at.error)
    assert "tweets.conll: line 5 has the tag 'PERSON', which has no B- or I- prefix" in said
    assert "BIO scheme" in said
    start(at)
    assert said in texts(at.error)
    assert started == [] and run_dirs(store) == []


def test_a_good_uploaded_tagging_file_is_previewed_and_used(store, started):
    at = show(run_page(), TAGGING)
    at.radio(key="new.tag.data_kind").set_value("upload").run()
    body = "".join(f"Barack\tB-PER\nObama\tI-PER\nin\tO\nParis\tB-LOC\n#{i}\tO\n\n" for i in range(30))
    at.file_uploader(key="new.tag.upload").set_value(("ner.txt", body.encode(), "text/plain")).run()
    assert not at.error, texts(at.error)
    assert "30 sentences and 150 tokens in ner.txt, 60 entities; entities per type: PER 30 (50%), LOC 30 (50%)" \
        in texts(at.caption)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    (saved,) = (store.root / ".uploads").glob("*/ner.txt")
    assert cfg.data.source == str(saved) and cfg.modality == TAGGING


@pytest.mark.parametrize("kind, loss", [(TAGGING, "attention_transfer"), (TRANSLATION, "attention_kl"),
                                        (LANGUAGE_MODEL, "cross_attention_kl")])
def test_a_defaults_file_with_a_loss_that_does_not_apply_shows_the_engines_message(store, tmp_path, monkeypatch,
                                                                                      kind, loss):
    path = tmp_path / "form.json"
    path.write_text(json.dumps({"task": kind, "variants": [{"name": "odd", "losses": {loss: 1}}]}))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    at = run_page()
    warned = texts(at.warning)
    assert f"ADS_FORM_DEFAULTS ignored: variant odd uses {loss}, which does not apply to {kind}" in warned
    assert ", ".join(loss_names_for(kind)) in warned
    assert at.segmented_control(key=keys.MODALITY).value == keys.TEXT_TASK      # the form's own defaults instead


def test_a_tagging_defaults_file_opens_the_form_on_tagging(store, started, tmp_path, monkeypatch):
    path = tmp_path / "form.json"
    path.write_text(json.dumps({"task": TAGGING, "train": {"epochs": 2}, "tagging": {"train_size": 500},
                                "data": {"probe_size": 6}}))
    monkeypatch.setenv("ADS_FORM_DEFAULTS", str(path))
    at = run_page()
    assert at.segmented_control(key=keys.MODALITY).value == TAGGING
    assert (at.number_input(key="new.tag.epochs").value, at.number_input(key="new.tag.train_size").value) == (2, 500)
    assert at.session_state["new.epochs"] == SessionConfig().train.epochs          # the text task's own
    start(at)
    (cfg,) = started
    assert cfg == SessionConfig.load(path)              # settings the form does not show (probe_size) kept


# ---- translation --------------------------------------------------------------------------------------------
def test_translation_shows_its_defaults_and_only_its_losses(store):
    at = show(run_page(), TRANSLATION)
    said = texts(at.caption)
    assert "Distil an encoder-decoder" in said and "cross-attention" in said
    assert at.radio(key="new.mt.teacher_kind").value == "default"
    assert at.radio(key="new.mt.data_kind").value == "default"
    assert (at.selectbox(key="new.mt.bible_source").value, at.selectbox(key="new.mt.bible_target").value) == \
        ("4", "l")
    assert "World English Bible" in at.selectbox(key="new.mt.bible_source").options[0] or \
        "World English Bible (English)" in at.selectbox(key="new.mt.bible_source").options
    assert block_names(at, keys.TRANSLATION_VARIANTS) == [v.name for v in translation_default_variants()]
    allowed = list(loss_names_for(TRANSLATION))
    assert offered_losses(at, keys.TRANSLATION_VARIANTS) == allowed
    assert "attention_kl" not in allowed and "attention_transfer" not in allowed
    shown = {c.key for c in at.checkbox} | {s.key for s in at.selectbox}
    for strategy in ("adv_method", "generated", "transfer_labels", "teacher", "preset", "attention_focus"):
        assert not any(k and k.startswith("new.mv0.") and k.endswith(strategy) for k in shown)
    assert not [n for n in at.number_input if n.key == "new.mt.ens_count"]
    tr = SessionConfig().translation
    assert at.number_input(key="new.mt.set.teacher_epochs").value == tr.teacher_epochs
    assert at.number_input(key="new.mt.set.max_words").value == tr.max_words
    assert at.number_input(key="new.mt.set.beam").value == tr.beam
    assert at.selectbox(key="new.mt.set.tokenizer").value == tr.tokenizer
    assert (at.number_input(key="new.mt.epochs").value, at.number_input(key="new.mt.lr").value,
            at.number_input(key="new.mt.temperature").value) == (tr.student_epochs, tr.student_lr, tr.temperature)
    assert not [n for n in at.number_input if n.key in ("new.mt.set.student_epochs", "new.mt.set.temperature")]
    assert not [s for s in at.selectbox if s.key == "new.mt.teacher_finetune"]     # a teacher built here is trained
    if shape := values.translation_student():           # the engine's own student while the section is left alone
        assert {k: at.number_input(key=f"new.mt.student_{k}").value for k in shape} == shape
    assert [at.number_input(key=f"new.mt.{k}_size").value for k in ("train", "val", "test")] == \
        list(values.translation_sizes() or (3000, 500, 2500))
    assert not at.error


def test_start_builds_a_translation_session_with_its_default_variants(store, started):
    at = start(show(run_page(), TRANSLATION))
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.task == TRANSLATION and cfg.modality == TRANSLATION
    assert cfg.variants == translation_default_variants()
    assert cfg.to_dict() == SessionConfig(task=TRANSLATION).to_dict()    # the engine's own: the bible's default pair
    assert cfg.ensemble.teachers == ()
    assert cfg.translation == SessionConfig().translation
    default = SessionConfig().data
    assert (cfg.data.train_size, cfg.data.val_size, cfg.data.test_size) == \
        (default.train_size, default.val_size, default.test_size)        # the engine's own split sizes, implied


def test_another_bible_pair_and_a_hub_dataset_come_back_from_the_values():
    base = tasks.TASKS[TRANSLATION].base(SessionConfig())
    values = form_values(base)
    assert values["modality"] == TRANSLATION
    values.update({"mt.bible_target": "v", "mt.train_size": 900, "mt.epochs": 3})
    cfg = tasks.build_config(values, base)
    assert cfg.data.source == "bible:4-v" and cfg.data.train_size == 900 and cfg.train.epochs == 3
    assert tasks.build_config(form_values(cfg), base) == cfg
    values.update({"mt.data_kind": "hub", "mt.data_hub": "opus_books", "mt.hub_split": "train"})
    cfg = tasks.build_config(values, base)
    assert cfg.data.source == "opus_books"
    assert tasks.build_config(form_values(cfg), base) == cfg
    values["mt.bible_source"], values["mt.data_kind"] = "v", "default"
    with pytest.raises(ConfigError, match="translates a version into itself"):
        tasks.build_config(values, base)


TRANSLATION_CUSTOM = {
    "task": TRANSLATION, "name": "mt", "teacher": {"source": "/models/opus-mt-en-fr", "finetune": "always",
                                                   "finetune_epochs": 3},
    "student": {"layers": 2, "heads": 2, "hidden": 64, "intermediate": 256, "init": "random"},
    "data": {"source": "/data/pairs.tsv", "train_size": 800, "val_size": 100, "test_size": 100, "max_length": 48},
    "translation": {"source_column": "en", "target_column": "fr", "max_words": 20, "tokenizer": "unigram",
                    "vocab_size": 3000, "teacher_layers": 2, "teacher_heads": 2, "teacher_hidden": 96,
                    "teacher_intermediate": 384, "teacher_dropout": 0.2, "teacher_epochs": 5, "teacher_lr": 3e-3,
                    "teacher_batch_size": 16, "beam": 4, "layer_map_encoder": "last", "layer_map_decoder": "0,1",
                    "layer_map_cross": "", "head_rule_encoder": "mean", "head_rule_decoder": "direct",
                    "head_rule_cross": "group", "poor_bleu": 5.0},
    "objectives": {"temperature": 3.0, "head_rule": "mean", "layer_map": "last"},
    "train": {"epochs": 5, "batch_size": 16, "lr": 1e-3, "seed": 3, "device": "cpu"},
    "variants": [{"name": "baseline", "losses": {"ce": 1.0}},
                 {"name": "cross", "losses": {"ce": 0.5, "cross_attention_kl": 0.2}, "auto_weights": "magnitude",
                  "schedules": {"cross_attention_kl": "linear_down"}}]}


def test_a_translation_config_comes_back_from_its_widget_values():
    """Every setting of the translation section the form shows, away from its default, comes back."""
    cfg = SessionConfig.from_dict(TRANSLATION_CUSTOM)
    base = tasks.TASKS[TRANSLATION].base(SessionConfig())
    mine, theirs = cfg.to_dict()["translation"], base.to_dict()["translation"]
    # one kind left on the shared map; the students' training defaults are the Training section's epochs and rate
    # and the Objectives' temperature, which the form sets itself
    assert [k for k in mine if mine[k] == theirs[k]] == ["student_epochs", "student_lr", "temperature",
                                                         "layer_map_cross"]
    shown = form_values(cfg)
    shown.update({"mt.file_source_column": "en", "mt.file_target_column": "fr"})     # the file's pickers
    assert tasks.build_config(shown, base) == cfg


def test_a_pair_file_of_one_column_shows_the_engines_words(store, started):
    at = show(run_page(), TRANSLATION)
    at.radio(key="new.mt.data_kind").set_value("upload").run()
    body = "english\n" + "".join(f"sentence {i}\n" for i in range(20))
    at.file_uploader(key="new.mt.upload").set_value(("pairs.csv", body.encode(), "text/csv")).run()
    said = texts(at.error)
    assert "pairs.csv has only one column (english); a file of sentence pairs needs two" in said
    start(at)
    assert said in texts(at.error)
    assert started == [] and run_dirs(store) == []


@pytest.mark.skipif("source_column" not in values.translation_fields(),
                    reason="TranslationConfig does not name the columns of a file of pairs yet")
def test_a_pair_file_is_previewed_and_its_columns_used(store, started):
    at = show(run_page(), TRANSLATION)
    at.radio(key="new.mt.data_kind").set_value("upload").run()
    body = "id,en,fr\n" + "".join(f"{i},the house {i},la maison {i}\n" for i in range(40))
    at.file_uploader(key="new.mt.upload").set_value(("house.csv", body.encode(), "text/csv")).run()
    assert not at.error, texts(at.error)
    assert (at.selectbox(key=keys.MT_FILE_SOURCE_COLUMN).value,
            at.selectbox(key=keys.MT_FILE_TARGET_COLUMN).value) == ("en", "fr")
    assert "40 sentence pairs in house.csv" in texts(at.caption)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    (saved,) = (store.root / ".uploads").glob("*/house.csv")
    assert cfg.data.source == str(saved) and cfg.modality == TRANSLATION
    assert (cfg.translation.source_column, cfg.translation.target_column) == ("en", "fr")


# ---- both --------------------------------------------------------------------------------------------------
def test_each_task_keeps_its_values_while_another_is_shown(store):
    at = run_page()
    at.number_input(key="new.epochs").set_value(7).run()
    show(at, TAGGING)
    at.number_input(key="new.tag.epochs").set_value(2).run()
    at.text_input(key="new.tv1.name").set_value("kd_tags").run()
    show(at, TRANSLATION)
    at.number_input(key="new.mt.epochs").set_value(9).run()
    at.selectbox(key="new.mt.bible_target").set_value("v").run()
    show(at, keys.IMAGE_TASK)
    show(at, keys.TEXT_TASK)
    assert at.number_input(key="new.epochs").value == 7
    show(at, TAGGING)
    assert at.number_input(key="new.tag.epochs").value == 2
    assert block_names(at, keys.TAGGING_VARIANTS)[1] == "kd_tags"
    show(at, TRANSLATION)
    assert at.number_input(key="new.mt.epochs").value == 9
    assert at.selectbox(key="new.mt.bible_target").value == "v"
    show(at, TAGGING)
    assert at.number_input(key="new.tag.epochs").value == 2


def test_every_offered_loss_applies_to_its_task():
    for vs, kind in ((keys.TEXT_VARIANTS, "text"), (keys.IMAGE_VARIANTS, "image"), (keys.TAGGING_VARIANTS, TAGGING),
                     (keys.TRANSLATION_VARIANTS, TRANSLATION), (keys.LANGUAGE_MODEL_VARIANTS, LANGUAGE_MODEL)):
        assert all(kind in OBJECTIVES[n].tasks for n in vs.losses)
        assert tuple(vs.losses) == loss_names_for(kind)


@pytest.mark.parametrize("kind", [TAGGING, TRANSLATION, LANGUAGE_MODEL])
def test_the_default_form_of_a_task_builds_the_engines_defaults(kind):
    values = form_values(SessionConfig())
    values[keys.value_key(keys.MODALITY)] = kind
    cfg = tasks.build_config(values, SessionConfig())
    assert cfg.modality == kind
    assert cfg.variants == SessionConfig(task=kind).variants
    assert cfg == SessionConfig(task=kind)


ENGINES = ("distill_core.modality.tagging", "distill_core.modality.tagging.data", "distill_core.modality.translation",
           "distill_core.modality.translation.data", "distill_core.modality.translation.task")


def test_the_form_works_without_the_tagging_and_translation_engines(store, started, monkeypatch):
    """The form imports the engines' readers only when it reads a file: without them every task still draws and
    builds its config, and a file is left for Start to check."""
    for name in ENGINES:
        monkeypatch.setitem(sys.modules, name, None)        # importing it raises ImportError
    at = run_page()
    for kind in (TAGGING, TRANSLATION):
        show(at, kind)
        assert not at.error, texts(at.error)
    at.radio(key="new.mt.data_kind").set_value("upload").run()
    body = "en,fr\nthe house,la maison\nthe cat,le chat\n"
    at.file_uploader(key="new.mt.upload").set_value(("few.csv", body.encode(), "text/csv")).run()
    assert "The pairs are checked when the session starts." in texts(at.caption)
    show(at, TAGGING)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.modality == TAGGING and cfg.variants == tagging_default_variants()
