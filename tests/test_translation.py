"""Translation with an encoder-decoder (distill_core/modality/translation/): the bible pairs and a user's file of
pairs, the split by source sentence, the per-token losses and the three kinds of attention on a tiny Marian model,
the teacher's translations for sequence-level KD, BLEU / chrF and their units, and a tiny session end to end.

Everything is offline and on the CPU: the tokenizer is trained here on a few dozen verses, the models are 2 + 2
layers, 16 wide."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF

from distill_core import objectives
from distill_core.config import SessionConfig
from distill_core.errors import ConfigError, DataError
from distill_core.modality.base import Batch
from distill_core.modality.translation import data as mt_data
from distill_core.modality.translation.capture import KindsCapture
from distill_core.modality.translation.data import (TranslationSplits, clean_verse, load_translation_splits,
                                                     read_bible, read_pair_file)
from distill_core.modality.translation.decoding import score, translate_ids
from distill_core.modality.translation.divergence import adapt_teacher, probe_kind_metrics
from distill_core.modality.translation.modality import TranslationModality
from distill_core.modality.translation.models import build_marian
from distill_core.modality.translation.teacher import teacher_translations
from distill_core.modality.translation.tokenizer import train_tokenizer
from distill_core.objectives import IGNORED, LossInputs
from distill_core.teacher import PreparedTeacher

TINY_MT = {"max_words": 8, "vocab_size": 200, "teacher_layers": 2, "teacher_heads": 2, "teacher_hidden": 16,
           "teacher_intermediate": 32, "teacher_epochs": 2, "teacher_batch_size": 32}


@pytest.fixture(scope="module")
def verses():
    """(sources, targets): 60 short English -> French verses of the bundled bible."""
    pairs = read_bible("bible", 8)
    return pairs.sources[:60], pairs.targets[:60]


@pytest.fixture(scope="module")
def tokenizer(verses):
    return train_tokenizer(verses[0] + verses[1], vocab_size=200)


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    """A 2 + 2 layer, 2-head, 16-wide Marian model over the tiny tokenizer, seeded."""
    return build_marian(tokenizer, layers=2, heads=2, hidden=16, intermediate=32, dropout=0.1, seed=0)


def _splits(verses, n_val=6, n_test=6) -> TranslationSplits:
    src, tgt = verses
    k = len(src) - n_val - n_test
    return TranslationSplits(src[:k], tgt[:k], src[k:k + n_val], tgt[k:k + n_val], src[k + n_val:], tgt[k + n_val:],
                             [0, 1, 2], "fp", "tiny", ("en", "fr"))


@pytest.fixture(scope="module")
def modality(tokenizer, tiny_model, verses):
    return TranslationModality(tokenizer, _splits(verses), 24, tiny_model.config.decoder_start_token_id)


# ---- the data -----------------------------------------------------------------------------------------------------
def test_verses_lose_the_database_markup():
    assert clean_verse("God`s [own] people") == "God's own people"
    assert clean_verse("(9:1) Au chef des chantres. (9:2) Je louerai") == "Au chef des chantres. Je louerai"
    assert clean_verse("\xadCuán  terrible\tes!") == "¡Cuán terrible es!"


def test_the_bible_pairs_are_aligned_verses_of_at_most_max_words():
    pairs = read_bible("bible", 6)
    assert 100 < len(pairs.sources) == len(pairs.targets) == len(pairs.keys) < 2000
    assert all(1 <= len(s.split()) <= 6 and 1 <= len(t.split()) <= 6 for s, t in zip(pairs.sources, pairs.targets))
    assert all(c not in s for s in pairs.sources + pairs.targets for c in "`[]")
    assert len(set(pairs.keys)) == len(pairs.keys) and pairs.keys[0].count(":") == 2
    assert pairs.languages == ("en", "fr") and "Segond" in pairs.name
    spanish = read_bible("bible:4-v", 6)
    assert spanish.languages == ("en", "es") and spanish.keys != pairs.keys


@pytest.mark.parametrize("source, words", [("bible:4", "bible:<source>-<target>"), ("bible:l-l", "into itself"),
                                           ("bible:4-q", "no version 'q'")])
def test_a_bad_bible_pair_is_refused_with_the_fix(source, words):
    with pytest.raises(DataError, match=words):
        read_bible(source, 6)


def test_the_split_is_by_source_sentence_and_no_pair_is_in_two_splits():
    data = SessionConfig.from_dict({"task": "translation", "data": {
        "source": "bible", "train_size": 300, "val_size": 40, "test_size": 60, "split_seed": 3},
        "translation": {"max_words": 8}})
    s = load_translation_splits(data.data, data.translation)
    assert (len(s.train_sources), len(s.val_sources), len(s.test_sources)) == (300, 40, 60)
    keys = {k: set(v) for k, v in s.keys.items()}
    assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"] or keys["val"] & keys["test"])
    norm = {k: {" ".join(x.split()).casefold() for x in v} for k, v in
            (("train", s.train_sources), ("val", s.val_sources), ("test", s.test_sources))}
    assert not (norm["train"] & norm["test"] or norm["train"] & norm["val"] or norm["val"] & norm["test"])
    assert s.extra_sources and len(s.probe_indices) == 8 and s.test_labels == s.test_targets
    again = load_translation_splits(data.data, data.translation)
    assert again.fingerprint == s.fingerprint and again.test_sources == s.test_sources
    other = load_translation_splits(data.with_overrides({"data.split_seed": 4}).data, data.translation)
    assert other.fingerprint != s.fingerprint


def test_the_classification_sizes_become_the_translation_defaults_capped_to_what_exists():
    cfg = SessionConfig.from_dict({"task": "translation", "translation": {"max_words": 12}})
    s = load_translation_splits(cfg.data, cfg.translation)
    n = len(s.train_sources) + len(s.val_sources) + len(s.test_sources)
    assert (len(s.val_sources), len(s.test_sources)) == mt_data.DEFAULT_SIZES[1:]
    assert len(s.train_sources) == n - 700 and not s.extra_sources
    small = mt_data.split_groups(20, (100, 50, 50), 0)
    assert [len(p) for p in small[0][:3]] == [14, 2, 4] and small[1]


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_users_file_of_pairs_is_read_by_its_two_columns(tmp_path):
    csv = _write(tmp_path / "pairs.csv", "en,fr\nhello,bonjour\ngood night,bonne nuit\nhello,salut\nthanks,merci\n")
    pairs = read_pair_file(str(csv), "en", "fr", 5)
    assert pairs.sources == ["hello", "good night", "hello", "thanks"] and pairs.targets[1] == "bonne nuit"
    tsv = _write(tmp_path / "pairs.tsv", "a\tb\none\tun\n")
    assert read_pair_file(str(tsv), "a", "b", 5).targets == ["un"]
    jsonl = _write(tmp_path / "pairs.jsonl", '{"src": "one", "tgt": "un"}\n{"src": "two", "tgt": "deux"}\n')
    assert read_pair_file(str(jsonl), "src", "tgt", 5).sources == ["one", "two"]
    cfg = SessionConfig.from_dict({"task": "translation", "data": {"source": str(csv), "split_seed": 0},
                                   "translation": {"source_column": "en", "target_column": "fr"}})
    s = load_translation_splits(cfg.data, cfg.translation)
    groups = [[x for x in part if x == "hello"] for part in (s.train_sources, s.val_sources, s.test_sources)]
    assert sorted(len(g) for g in groups) == [0, 0, 2]        # both pairs of one source in the same split
    assert any("appear more than once" in n for n in s.notices)


@pytest.mark.parametrize("text, columns, words", [
    ("en,fr\nhello,bonjour\nbye,\n", ("en", "fr"), r"1 pair has an empty target text \(column 'fr', row 2\); "
                                                   r"fill in the missing side or remove that row"),
    ("en,fr\n,bonjour\n,salut\nbye,au revoir\n", ("en", "fr"), r"2 pairs have an empty source text"),
    ("text\nhello\nbye\n", ("text", "fr"), r"only one column \(text\).*needs two"),
    ("en,fr\nhello,bonjour\n", ("en", "de"), r"no target column 'de'; its columns are: en, fr\. Set "
                                             r"translation.target_column"),
    ("en,fr\nhello,bonjour\n", ("english", "fr"), r"no source column 'english'.*translation.source_column"),
    ("en,fr\nhello,bonjour\n", ("en", "en"), "both 'en'"),
])
def test_a_bad_file_of_pairs_is_refused_with_the_problem_and_the_fix(tmp_path, text, columns, words):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=words):
        read_pair_file(str(path), *columns, 5)


# ---- the tokenizer and batches ------------------------------------------------------------------------------------
def test_the_shared_tokenizer_round_trips_both_languages(tokenizer, verses):
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]
    for text in (verses[0][0], verses[1][0]):
        ids = tokenizer(text)["input_ids"]
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    unigram = train_tokenizer(verses[0] + verses[1], 150, "unigram")
    assert unigram.decode(unigram(verses[0][3])["input_ids"], skip_special_tokens=True) == verses[0][3]


def test_a_batch_feeds_the_decoder_the_reference_shifted_right(modality):
    b = modality.batch("train", [0, 5], "cpu")
    tgt = [modality.targets["train"][0], modality.targets["train"][5]]
    assert b.labels.shape == b.inputs["decoder_input_ids"].shape == (2, max(map(len, tgt)))
    for j, t in enumerate(tgt):
        assert b.labels[j, :len(t)].tolist() == t and (b.labels[j, len(t):] == IGNORED).all()
        assert b.inputs["decoder_input_ids"][j, :len(t)].tolist() == [modality.start_id] + t[:-1]
        assert b.inputs["decoder_attention_mask"][j].sum() == len(t)
    assert torch.equal(b.mask, b.inputs["attention_mask"])


# ---- the losses, by hand ------------------------------------------------------------------------------------------
def _inputs():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)          # (B, Tt, V)
    labels = torch.tensor([[1, 4, IGNORED], [2, IGNORED, IGNORED]])
    return LossInputs(student, labels, torch.ones(2, 4), temperature=2.0, teacher_logits=teacher)


def test_cross_entropy_is_the_mean_over_real_target_tokens():
    inp = _inputs()
    s = inp.student_logits
    by_hand = -(F.log_softmax(s[0, 0], -1)[1] + F.log_softmax(s[0, 1], -1)[4] + F.log_softmax(s[1, 0], -1)[2]) / 3
    assert math.isclose(objectives.get("ce").fn(inp).item(), by_hand.item(), rel_tol=1e-5)


def test_word_level_kd_is_the_kl_per_real_target_token_times_t_squared():
    inp = _inputs()
    t = 2.0
    kls = []
    for b, i in ((0, 0), (0, 1), (1, 0)):
        p = F.softmax(inp.teacher_logits[b, i] / t, -1)
        log_q = F.log_softmax(inp.student_logits[b, i] / t, -1)
        kls.append((p * (p.log() - log_q)).sum())
    by_hand = torch.stack(kls).mean() * t * t
    assert math.isclose(objectives.get("logit_kd").fn(inp).item(), by_hand.item(), rel_tol=1e-5)


def test_the_attention_kl_of_each_kind_uses_its_own_rows_and_keys():
    """Rows of real queries only; padded keys renormalised away; the decoder's rows over earlier positions only."""
    labels = torch.tensor([[5, 6, IGNORED]])                                  # 2 real target positions of 3
    src = torch.tensor([[1.0, 1.0, 0.0]])                                     # 2 real source tokens of 3
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.3, 0.3, 0.4]])[None, None, None]   # (1, 1, 1, 3, 3)
    q = torch.tensor([[0.25, 0.5, 0.25], [0.2, 0.8, 0.0], [1.0, 0.0, 0.0]])[None, None, None]
    inp = LossInputs(torch.zeros(1, 3, 4), labels, src, extra={
        "teacher": {"attention": {"cross": p, "encoder": p, "decoder": p}},
        "student": {"attention": {"cross": q, "encoder": q, "decoder": q}}})
    renorm = torch.tensor([1 / 3, 2 / 3])                                     # q's first row over the real keys
    row0 = (torch.tensor([0.5, 0.5]) * (torch.tensor([0.5, 0.5]).log() - renorm.log())).sum()
    assert math.isclose(objectives.get("cross_attention_kl").fn(inp).item(), row0.item() / 2, rel_tol=1e-5)
    assert math.isclose(objectives.get("encoder_attention_kl").fn(inp).item(), row0.item() / 2, rel_tol=1e-5)
    # decoder: row 0 sees key 0 only (both rows 1 after renormalising), row 1 keys 0 and 1 (equal): KL 0
    assert objectives.get("decoder_attention_kl").fn(inp).item() == pytest.approx(0.0, abs=1e-6)


def test_translation_losses_apply_to_translation_only():
    for name in ("encoder_attention_kl", "decoder_attention_kl", "cross_attention_kl"):
        assert objectives.get(name).tasks == frozenset({"translation"})
    assert objectives.get("seq_kd").tasks == frozenset({"translation", "language_model"})
    with pytest.raises(ConfigError, match="cross_attention_kl"):
        SessionConfig.from_dict({"variants": [{"name": "baseline", "losses": {"ce": 1}},
                                              {"name": "x", "losses": {"cross_attention_kl": 1}}]})
    cfg = SessionConfig.from_dict({"task": "translation"})
    assert [v.name for v in cfg.variants][0] == "baseline"
    assert {n for v in cfg.variants for n in v.losses} >= {"ce", "logit_kd", "seq_kd", "cross_attention_kl"}


# ---- the three kinds of attention -------------------------------------------------------------------------------
def test_the_capture_gives_probability_rows_with_padding_and_the_future_at_zero(tiny_model, modality):
    b = modality.batch("val", [0, 1, 2, 3], "cpu")
    tiny_model.train()                                     # dropout on: the maps are still before dropout
    with KindsCapture(tiny_model, {"cross": None, "encoder": [1], "decoder": None}) as cap:
        tiny_model(**b.inputs)
        maps = cap.pop()
    tiny_model.eval()
    src, tgt = b.inputs["attention_mask"], b.inputs["decoder_attention_mask"]
    assert maps["cross"].shape == (4, 2, 2, tgt.shape[1], src.shape[1])
    assert maps["encoder"].shape == (4, 1, 2, src.shape[1], src.shape[1])
    for kind in ("cross", "encoder", "decoder"):
        assert torch.allclose(maps[kind].sum(-1), torch.ones(()), atol=1e-5)
    for j in range(4):
        pad = src[j] == 0
        assert (maps["cross"][j][..., pad] == 0).all() and (maps["encoder"][j][..., pad] == 0).all()
    future = torch.triu(torch.ones(tgt.shape[1], tgt.shape[1]), 1).bool()
    assert (maps["decoder"][..., future] == 0).all()


def test_probe_maps_have_each_kinds_axes(tiny_model, modality):
    maps = modality.probe_maps(tiny_model, "cpu")
    assert list(maps) == ["cross", "encoder", "decoder"]
    for i, (s, t) in enumerate(zip(modality.probe_sources, modality.probe_targets)):
        assert maps["cross"][i].shape == (2, 2, len(t), len(s))
        assert maps["encoder"][i].shape == (2, 2, len(s), len(s))
        assert maps["decoder"][i].shape == (2, 2, len(t), len(t))
    record = modality.probe_record()
    assert len(record["target_tokens"][0]) == len(modality.probe_targets[0]) and record["label_names"] == []


def test_rectangular_maps_reduce_heads_and_compare_kind_by_kind(tiny_model, modality):
    maps = modality.probe_maps(tiny_model, "cpu")
    same = probe_kind_metrics(maps["cross"], maps["cross"], [(0, 0), (1, 1)], "direct", 2)
    assert np.allclose(same["js"], 0, atol=1e-6) and np.allclose(same["cosine"], 1, atol=1e-5)
    grouped = adapt_teacher(torch.rand(3, 4, 5, 7), "group", 2)
    assert grouped.shape == (3, 2, 5, 7)
    other = probe_kind_metrics(maps["cross"], [m[:, ::-1].copy() for m in maps["cross"]], [(1, 0), (1, 1)],
                               "mean", 2)
    assert np.array(other["js"]).shape == (2, 1)


# ---- decoding, scores and sequence-level KD ------------------------------------------------------------------------
def test_scores_are_sacrebleus_and_the_units_are_sentence_chrf(tiny_model, modality):
    hyps, refs = ["le chat dort", "un chien"], ["le chat dort ici", "le chien"]
    s = score(hyps, refs)
    assert s["bleu"] == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-3)
    assert s["chrf"] == pytest.approx(CHRF().corpus_score(hyps, [refs]).score, abs=1e-3)
    assert s["sentence_chrf"] == [pytest.approx(CHRF().sentence_score(h, [r]).score, abs=1e-3)
                                  for h, r in zip(hyps, refs)]
    out = modality.predict(tiny_model, "test", "cpu")
    assert out["statistic"] == "mean" and len(out["units"]) == len(out["predictions"]) == modality.size("test")
    assert all(isinstance(p, str) for p in out["predictions"])
    again = score(out["predictions"], modality.labels["test"])
    assert [u[0] for u in out["units"]] == pytest.approx([c / 100 for c in again["sentence_chrf"]])
    assert out["accuracy"] == pytest.approx(np.mean([u[0] for u in out["units"]]))
    assert out["details"]["chrf"] == pytest.approx(again["chrf"])
    assert {"bleu", "chrf", "beam"} <= set(out["details"]) and out["loss"] > 0
    acc, loss = modality.evaluate(tiny_model, "val", "cpu")
    assert 0 <= acc <= 1 and loss == pytest.approx(modality.predict(tiny_model, "val", "cpu")["loss"], rel=1e-5)


def test_the_teachers_translations_are_cached_and_become_seq_kd_targets(tiny_model, tokenizer, modality, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "teacher"
    tiny_model.save_pretrained(folder, safe_serialization=True)
    prepared = PreparedTeacher(tiny_model, tokenizer, str(folder), True, False)
    sources = modality.ids["train"][:10]
    first, hit = teacher_translations(prepared, sources, "fp:train", "cpu", 24)
    assert not hit and len(first) == 10 and all(t[-1] == tokenizer.eos_token_id for t in first)
    assert [t[:-1] for t in first] == translate_ids(tiny_model, sources, tokenizer.pad_token_id, "cpu", max_length=23)
    again, hit = teacher_translations(prepared, sources, "fp:train", "cpu", 24)
    assert hit and again == first
    # the objective: the student's cross-entropy, teacher-forced on those translations
    from distill_core.modality.translation.task import TranslationTeacherOutputs
    source = TranslationTeacherOutputs(tiny_model, {}, False, first, modality.start_id, modality.pad_id, "cpu", False)
    batch = modality.batch("train", [2, 7], "cpu")
    extra = source(batch).extra["seq_kd"]
    rows = [first[2], first[7]]
    assert extra["decoder_input_ids"][0, :len(rows[0])].tolist() == [modality.start_id] + rows[0][:-1]
    assert extra["labels"][1, :len(rows[1])].tolist() == rows[1]
    assert (extra["labels"][1, len(rows[1]):] == IGNORED).all()
    calls = []

    def seq_forward(target):
        ids = target["decoder_input_ids"]
        calls.append(ids)
        return torch.zeros(*ids.shape, len(tokenizer))
    inp = LossInputs(torch.zeros(2, 3, 4), batch.labels, batch.mask,
                     extra={"teacher": {"seq_kd": extra}, "student": {"seq_forward": seq_forward}})
    assert objectives.get("seq_kd").fn(inp).item() == pytest.approx(math.log(len(tokenizer)), rel=1e-5)
    assert torch.equal(calls[0], extra["decoder_input_ids"])


# ---- a tiny session end to end -------------------------------------------------------------------------------------
def tiny_translation_config(**over) -> dict:
    d = {"task": "translation", "name": "tiny translation",
         "data": {"source": "bible", "train_size": 120, "val_size": 12, "test_size": 16, "probe_size": 3,
                  "max_length": 24},
         "translation": dict(TINY_MT),
         "teacher": {"finetune_min_steps": 0},
         "student": {"layers": 1, "heads": 2, "hidden": 8, "intermediate": 16, "init": "random"},
         "variants": [{"name": "baseline", "losses": {"ce": 1}},
                      {"name": "word_kd", "losses": {"ce": .5, "logit_kd": .5}},
                      {"name": "seq_kd", "losses": {"ce": .5, "seq_kd": .5}},
                      {"name": "att", "losses": {"ce": .5, "cross_attention_kl": 1, "encoder_attention_kl": 1,
                                                 "decoder_attention_kl": 1}}],
         "train": {"epochs": 2, "batch_size": 32, "lr": 1e-3, "seed": 0, "device": "cpu", "min_steps": 0}}
    d.update(over)
    return d


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory):
    """(store, run_id) of a 2-epoch translation session with four variants, written by the real engine."""
    os.environ["ADS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")    # before the per-test fixture
    from distill_core import RunStore, run_session
    store = RunStore(tmp_path_factory.mktemp("mt_runs"))
    return store, run_session(SessionConfig.from_dict(tiny_translation_config()), store)


def test_a_tiny_translation_session_writes_its_metric_details_and_paired_comparisons(translation_run):
    store, run_id = translation_run
    folder = store.root / run_id
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "done", summary.get("error")
    assert summary["metric"]["short"] == "chrF"
    names = ["teacher", "baseline", "word_kd", "seq_kd", "att"]
    assert set(summary["accuracy"]) == set(names) and all(0 <= summary["accuracy"][n] <= 1 for n in names)
    assert set(summary["details"]) == set(names) and all("bleu" in summary["details"][n] for n in names)
    assert set(summary["paired"]) == {"word_kd", "seq_kd", "att"}
    for name, p in summary["paired"].items():
        assert p["statistic"] == "mean" and p["n"] == 16 and p["lo"] <= p["diff"] <= p["hi"]
        # the score is the mean of the units the bootstrap resamples: the two never disagree
        assert p["ref_accuracy"] == pytest.approx(summary["accuracy"]["baseline"])
        assert p["accuracy"] == pytest.approx(summary["accuracy"][name])
    assert any("the teacher is the problem" in n for n in summary["notices"])     # two epochs of a tiny teacher
    predictions = json.loads((folder / "predictions.json").read_text())
    assert len(predictions["labels"]) == 16 and all(isinstance(x, str) for x in predictions["predictions"]["att"])
    assert predictions["statistic"] == "mean" and len(predictions["units"]["baseline"]) == 16
    probe = json.loads((folder / "probe.json").read_text())
    assert probe["modality"] == "translation" and list(probe["attention_kinds"]) == ["cross", "encoder", "decoder"]
    assert probe["attention_kinds"]["cross"]["query"] == "target" and len(probe["translations"]["teacher"]) == 3
    last = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()][-1]
    assert set(last["attention_kinds"]) == {"cross", "encoder", "decoder"} and last["js_mean"] is not None
    losses = {json.loads(line)["student"]: json.loads(line)["train_loss"]
              for line in (folder / "metrics.jsonl").read_text().splitlines()}
    assert {"cross_attention_kl", "encoder_attention_kl", "decoder_attention_kl"} <= set(losses["att"])
    assert "seq_kd" in losses["seq_kd"] and "logit_kd" in losses["word_kd"]
    assert (folder / "attention" / "teacher.npz").is_file() and (folder / "attention" / "teacher.encoder.npz").is_file()


def test_a_finished_translation_run_reopens_and_a_second_session_reuses_the_teacher(translation_run):
    from distill_core import run_session
    from distill_core.reopen import reopen
    store, run_id = translation_run
    fr = reopen(store.open(run_id))
    modality = fr.task()
    assert modality.size("test") == 16 and modality.size("train") == 0
    student = fr.student("att")
    result = modality.predict(student, "test", "cpu")
    recorded = json.loads((store.root / run_id / "summary.json").read_text())["accuracy"]["att"]
    assert result["accuracy"] == pytest.approx(recorded)
    from distill_core.modality.translation.analysis import translate_with_attention
    out = translate_with_attention(student, fr.reader(), "In the beginning God created the heavens.", "cpu")
    assert out["maps"]["cross"].shape == (1, 2, len(out["target_tokens"]), len(out["source_tokens"]))
    second = run_session(SessionConfig.from_dict(tiny_translation_config(name="again")), store)
    summary = json.loads((store.root / second / "summary.json").read_text())
    assert summary["teacher_cached"] is True
    assert any("came from the cache" in n for n in summary["notices"])


@pytest.mark.parametrize("change, words", [
    ({"ensemble": {"teachers": [{"seed": 1}]}}, "one teacher"),
    ({"variants": [{"name": "baseline", "losses": {"ce": 1}},
                   {"name": "f", "losses": {"ce": 1, "cross_attention_kl": 1}, "attention_focus": True}]},
     "attention_focus"),
    ({"translation": {**TINY_MT, "layer_map_cross": "5"}}, "cross-attention: layer_map names teacher layer 5"),
])
def test_what_translation_cannot_do_is_refused_before_training(tmp_path, change, words):
    from distill_core import RunStore, run_session
    with pytest.raises(ConfigError, match=words):
        run_session(SessionConfig.from_dict(tiny_translation_config(**change)), RunStore(tmp_path / "runs"))


def test_a_student_with_another_tokenizer_is_refused_with_the_fix(tmp_path, verses, monkeypatch):
    from distill_core.modality.translation.task import TranslationData, TranslationTask
    other = train_tokenizer(verses[1], 120)
    folder = tmp_path / "student"
    build_marian(other, 1, 2, 8, 16, seed=0).save_pretrained(folder, safe_serialization=True)
    other.save_pretrained(folder)
    cfg = SessionConfig.from_dict(tiny_translation_config(student={"source": str(folder)}))
    mine = train_tokenizer(verses[0] + verses[1], 200)
    teacher = PreparedTeacher(build_marian(mine, 2, 2, 16, 32, seed=0), mine, "x", False, False)
    data = TranslationData(_splits(verses), teacher=teacher)
    with pytest.raises(ConfigError, match="must share the teacher's tokenizer.*Leave student.source empty"):
        TranslationTask(cfg).initial_student(data, teacher.model, "uniform")


def test_the_task_refuses_robustness_and_generated_data():
    from distill_core.modality.translation.task import TranslationTask
    task = TranslationTask(SessionConfig.from_dict({"task": "translation"}))
    with pytest.raises(ConfigError, match="not for translation"):
        task.robustness({}, None, "cpu", None)
    with pytest.raises(ConfigError, match="not for translation"):
        task.generate(None, None)
    assert Batch is not None
