"""The New session form's language model, driven with AppTest: its defaults (the task's own training, student and
split sizes shown while they are implied), only its losses and strategies, the config the form builds and its round
trip, an uploaded file's passages and text column read by the engine, and a file the engine refuses shown before
Start. Nothing trains: starting is replaced by the `started` recorder (conftest)."""
from __future__ import annotations

import json
import sys

import pytest

from app.new_session import keys, tasks, values
from app_helpers import texts
from distill_core import SessionConfig
from distill_core.config import LanguageModelConfig, language_model_default_variants
from distill_core.errors import ConfigError
from distill_core.objectives import loss_names_for

from test_app_new_tasks import block_names, form_values, offered_losses, run_page, show, start
from test_app_session import run_dirs

LM = keys.LANGUAGE_MODEL_TASK


def upload(at, name: str, body: str, mime: str = "text/plain"):
    at.radio(key="new.lm.data_kind").set_value("upload").run()
    at.file_uploader(key="new.lm.upload").set_value((name, body.encode(), mime)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chapters(n: int, words: int = 12) -> list[str]:
    """n distinct passages of plain words."""
    return [" ".join(f"word{i}_{k}" for k in range(words)) for i in range(n)]


# ---- the form's defaults ---------------------------------------------------------------------------------------
def test_the_language_model_shows_its_defaults_and_only_its_losses(store):
    at = show(run_page(), LM)
    said = texts(at.caption)
    assert tasks.TASKS[LM].intro in said and "causal (GPT-style)" in said and "on-policy" in said
    assert tasks.TASKS[LM].probes == "passages"
    assert at.radio(key="new.lm.teacher_kind").value == "default"
    assert at.radio(key="new.lm.data_kind").value == "default"
    assert at.selectbox(key="new.lm.bible_version").value == "4"
    assert "World English Bible (English)" in at.selectbox(key="new.lm.bible_version").options
    assert block_names(at, keys.LANGUAGE_MODEL_VARIANTS) == [v.name for v in language_model_default_variants()] \
        == ["baseline", "forward_kl", "reverse_kl", "gkd", "on_policy"]
    allowed = list(loss_names_for(LM))
    assert offered_losses(at, keys.LANGUAGE_MODEL_VARIANTS) == allowed
    assert {"reverse_kl", "gkd", "on_policy", "causal_attention_kl"} <= set(allowed)
    assert "attention_kl" not in allowed and "cross_attention_kl" not in allowed
    shown = {c.key for c in at.checkbox} | {s.key for s in at.selectbox}
    for strategy in ("adv_method", "generated", "transfer_labels", "teacher", "preset", "attention_focus"):
        assert not any(k and k.startswith("new.lv0.") and k.endswith(strategy) for k in shown)
    assert not [n for n in at.number_input if n.key == "new.lm.ens_count"]             # one teacher
    assert "suggested" not in at.radio(key="new.lm.layer_map_kind").options
    assert not at.error, texts(at.error)


def test_the_training_section_shows_the_tasks_own_epochs_and_rate(store):
    at = show(run_page(), LM)
    lm = LanguageModelConfig()
    epochs, lr = at.number_input(key="new.lm.epochs"), at.number_input(key="new.lm.lr")
    assert (epochs.value, lr.value) == (lm.student_epochs, lm.student_lr)   # not the text task's 4 at 5e-4
    assert lr.value == 2e-3 and lr.proto.format == "%.1e"                       # shown as 2.0e-03
    assert at.number_input(key="new.lm.temperature").value == lm.temperature == 1.0
    # the task's training defaults are the Training section's and the Objectives' own: not drawn again
    assert not [n for n in at.number_input
                if n.key in ("new.lm.set.student_epochs", "new.lm.set.student_lr", "new.lm.set.temperature")]


def test_the_student_sizes_and_section_settings_show_what_the_engine_uses(store):
    at = show(run_page(), LM)
    if shape := values.language_model_student():
        assert shape == {"layers": 2, "heads": 4, "hidden": 96, "intermediate": 384}
        assert {k: at.number_input(key=f"new.lm.student_{k}").value for k in shape} == shape
    assert at.radio(key="new.lm.student_init").options == ["auto", "random", "from_teacher", "teacher_embeddings"]
    assert [at.number_input(key=f"new.lm.{k}_size").value for k in ("train", "val", "test")] == \
        list(values.language_model_sizes() or (3000, 500, 2500))
    context = at.number_input(key="new.lm.max_length")
    assert (context.label, context.value) == ("Context (tokens)", SessionConfig().data.max_length)
    lm = LanguageModelConfig()
    for name in ("teacher_epochs", "teacher_layers", "teacher_heads", "teacher_hidden", "teacher_intermediate",
                 "teacher_lr", "vocab_size", "beta", "on_policy_fraction", "prompt_tokens", "sample_temperature",
                 "samples"):
        assert at.number_input(key=f"new.lm.set.{name}").value == getattr(lm, name), name
    assert at.selectbox(key="new.lm.set.tokenizer").value == lm.tokenizer
    assert at.number_input(key="new.lm.set.beta").max == 1.0
    assert not [s for s in at.selectbox if s.key == "new.lm.teacher_finetune"]     # a teacher built here is trained
    at.radio(key="new.lm.teacher_kind").set_value("hub").run()
    assert at.text_input(key="new.lm.teacher_hub").placeholder == "e.g. gpt2 or distilgpt2"
    assert at.selectbox(key="new.lm.teacher_finetune").value == "auto"


# ---- the config the form builds ----------------------------------------------------------------------------
def test_the_form_defaults_build_the_engines_language_model_defaults():
    cfg = SessionConfig(task=LM)
    assert tasks.build_config(form_values(cfg), cfg) == cfg
    shown = form_values(SessionConfig())            # the form on the text defaults, the language model picked
    shown[keys.value_key(keys.MODALITY)] = LM
    assert tasks.build_config(shown, SessionConfig()) == cfg
    assert cfg.train.epochs == cfg.language_model.student_epochs and cfg.objectives.temperature == 1.0


def test_start_builds_a_language_model_session_with_its_default_variants(store, started):
    at = start(show(run_page(), LM))
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.task == LM and cfg.modality == LM
    assert cfg.variants == language_model_default_variants()
    assert cfg.to_dict() == SessionConfig(task=LM).to_dict()
    assert cfg.ensemble.teachers == ()
    assert run_dirs(store) == [at.session_state[keys.ACTIVE_RUN]]


def test_changing_the_widgets_changes_the_config(store, started):
    at = show(run_page(), LM)
    at.selectbox(key="new.lm.bible_version").set_value("3").run()
    at.number_input(key="new.lm.epochs").set_value(3).run()
    at.number_input(key="new.lm.max_length").set_value(96).run()
    at.number_input(key="new.lm.set.beta").set_value(0.8).run()
    at.number_input(key="new.lm.set.prompt_tokens").set_value(8).run()
    at.number_input(key="new.lm.student_layers").set_value(3).run()
    at.number_input(key="new.lm.val_size").set_value(30).run()
    at.checkbox(key="new.lv1.loss.causal_attention_kl").check().run()
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.data.source == "bible:3" and cfg.data.max_length == 96
    assert cfg.train.epochs == 3 and cfg.language_model.beta == 0.8 and cfg.language_model.prompt_tokens == 8
    assert (cfg.student.layers, cfg.student.hidden) == (3, 96)   # one change: the whole shape written
    assert (cfg.data.train_size, cfg.data.val_size, cfg.data.test_size) == (100_000, 30, 60)
    assert cfg.variant("forward_kl").losses == {"ce": 0.5, "logit_kd": 0.5, "causal_attention_kl": 1.0}


LM_CUSTOM = {
    "task": LM, "name": "lm", "teacher": {"source": "/models/gpt2", "finetune": "always", "finetune_epochs": 3},
    "student": {"layers": 2, "heads": 2, "hidden": 64, "intermediate": 256, "init": "from_teacher"},
    "data": {"source": "/data/texts.csv", "train_size": 800, "val_size": 40, "test_size": 40, "max_length": 128},
    "language_model": {"text_column": "body", "tokenizer": "unigram", "vocab_size": 3000, "teacher_layers": 2,
                       "teacher_heads": 2, "teacher_hidden": 96, "teacher_intermediate": 384, "teacher_dropout": 0.2,
                       "teacher_epochs": 6, "teacher_lr": 3e-3, "teacher_batch_size": 16, "beta": 0.9,
                       "on_policy_fraction": 0.25, "prompt_tokens": 8, "sample_tokens": 20, "sample_temperature": 0.7,
                       "samples": 24},
    "objectives": {"temperature": 2.5, "head_rule": "mean", "layer_map": [1, 3]},
    "train": {"epochs": 5, "batch_size": 16, "lr": 1e-3, "seed": 3, "device": "cpu"},
    "variants": [{"name": "baseline", "losses": {"ce": 1.0}},
                 {"name": "gkd_att", "losses": {"ce": 0.5, "gkd": 0.5, "causal_attention_kl": 0.2},
                  "auto_weights": "magnitude", "schedules": {"causal_attention_kl": "linear_down"}}]}


def test_a_language_model_config_comes_back_from_its_widget_values():
    """Every setting of the language_model section the form shows, away from its default, comes back; so do a
    hub dataset and another bible version."""
    cfg = SessionConfig.from_dict(LM_CUSTOM)
    base = tasks.TASKS[LM].base(SessionConfig())
    mine, theirs = cfg.to_dict()["language_model"], base.to_dict()["language_model"]
    # the students' training defaults are the Training section's epochs and rate and the Objectives' temperature
    assert [k for k in mine if mine[k] == theirs[k]] == ["student_epochs", "student_lr", "temperature"]
    shown = form_values(cfg)
    assert shown["lm.data_kind"] == "local" and shown["lm.text_column"] == "body"
    assert tasks.build_config(shown, base) == cfg
    assert tasks.build_config({**shown, "lm.file_text_column": "title"}, base).language_model.text_column == "title"
    hub = dict(shown, **{"lm.data_kind": "hub", "lm.data_hub": "roneneldan/TinyStories", "lm.hub_split": "validation"})
    built = tasks.build_config(hub, base)
    assert (built.data.source, built.data.hub_split, built.language_model.text_column) == \
        ("roneneldan/TinyStories", "validation", "body")
    assert tasks.build_config(form_values(built), base) == built
    bible = tasks.build_config(dict(shown, **{"lm.data_kind": "default", "lm.bible_version": "3"}), base)
    assert bible.data.source == "bible:3"
    assert form_values(bible)["lm.bible_version"] == "3" and tasks.build_config(form_values(bible), base) == bible
    with pytest.raises(ConfigError, match="hub dataset of texts"):
        tasks.build_config(dict(hub, **{"lm.data_hub": " "}), base)


# ---- a file of texts ---------------------------------------------------------------------------------------
def test_a_csvs_text_column_is_picked_and_reaches_the_config(store, started):
    body = "id,title,body\n" + "".join(f"{i},title {i},{text}\n" for i, text in enumerate(chapters(30)))
    at = upload(show(run_page(), LM), "texts.csv", body, "text/csv")
    assert not at.error, texts(at.error)
    picker = at.selectbox(key=keys.LM_FILE_TEXT_COLUMN)
    assert picker.options == ["id", "title", "body"] and picker.value == "body"
    assert "30 passages in texts.csv (column body): 360 words, 12 a passage on average." in texts(at.caption)
    picker.set_value("title").run()
    assert "30 passages in texts.csv (column title)" in texts(at.caption)
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    (saved,) = (store.root / ".uploads").glob("*/texts.csv")
    assert cfg.data.source == str(saved) and cfg.modality == LM
    assert cfg.language_model.text_column == "title"


def test_a_txt_file_is_read_as_paragraphs(store, started):
    at = upload(show(run_page(), LM), "notes.txt", "\n\n".join(chapters(12)) + "\n")
    assert not at.error, texts(at.error)
    assert not [s for s in at.selectbox if s.key == keys.LM_FILE_TEXT_COLUMN]     # no columns in plain text
    assert "12 passages in notes.txt (one passage per paragraph)" in texts(at.caption)
    few = upload(show(run_page(), LM), "short.txt", " ".join(chapters(3, 150)))
    assert "3 passages in short.txt (passages of 200 words)" in texts(few.caption)
    assert "short.txt has 1 paragraph (fewer than 10), so it was cut into 3 passages of 200 words." \
        in texts(few.caption)
    start(at)
    (cfg,) = started
    assert cfg.data.source.endswith("notes.txt") and cfg.language_model.text_column == "text"


@pytest.mark.parametrize("name, body, said", [
    ("blank.txt", "\n\n   \n\n", "blank.txt holds no text; a language model learns from plain English (or any) text"),
    ("nested.jsonl", "".join(json.dumps({"text": ["a", "list"], "id": i}) + "\n" for i in range(5)),
     "nested.jsonl: the column 'text' holds lists or objects, not text (first at row 1)")])
def test_a_file_the_engine_refuses_shows_its_words_and_does_not_start(store, started, name, body, said):
    at = upload(show(run_page(), LM), name, body)
    assert said in texts(at.error)
    start(at)
    assert said in texts(at.error)
    assert started == [] and run_dirs(store) == []


def test_the_language_model_keeps_its_values_while_another_task_is_shown(store):
    at = show(run_page(), LM)
    at.number_input(key="new.lm.set.beta").set_value(0.25).run()
    at.text_input(key="new.lv1.name").set_value("kd").run()
    show(at, keys.TRANSLATION_TASK)
    show(at, keys.TEXT_TASK)
    show(at, LM)
    assert at.number_input(key="new.lm.set.beta").value == 0.25
    assert block_names(at, keys.LANGUAGE_MODEL_VARIANTS)[1] == "kd"


def test_the_form_works_without_the_language_model_engine(store, started, monkeypatch):
    """Without the engine the form still draws and builds the config, and a file is left for Start to check."""
    for name in ("distill_core.modality.language_model", "distill_core.modality.language_model.data",
                 "distill_core.modality.language_model.task"):
        monkeypatch.setitem(sys.modules, name, None)        # importing it raises ImportError
    at = upload(show(run_page(), LM), "texts.csv", "text\n" + "\n".join(chapters(5)) + "\n", "text/csv")
    assert not at.error, texts(at.error)
    assert "The passages are checked when the session starts." in texts(at.caption)
    assert at.selectbox(key=keys.LM_FILE_TEXT_COLUMN).value == "text"
    at.radio(key="new.lm.data_kind").set_value("default").run()
    start(at)
    assert not at.error, texts(at.error)
    (cfg,) = started
    assert cfg.modality == LM and cfg.variants == language_model_default_variants()
