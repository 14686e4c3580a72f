"""Token tagging: reading BIO files (and refusing bad ones with the line and the fix), the bundled tweets and their
splits, sub-word label alignment, per-token losses on a tagging batch, entity units that add up to seqeval's micro F1,
the teacher's head matched to the data's tags, and a whole tiny tagging session through distill_core.session.

Everything is offline and on the CPU with tiny models: a 2-layer, 2-head, 32-wide BERT tagger with the MiniLM
tokenizer the other tests use."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score

from distill_core import RunStore, SessionConfig, objectives, run_session
from distill_core.config import DataConfig, TaggingConfig
from distill_core.errors import ConfigError, DataError, OfflineError
from distill_core.modality.tagging.analysis import spans, tag_sentence, words_of
from distill_core.modality.tagging.data import (load_tag_splits, load_tagged, parse_tagged_jsonl,
                                                read_tagged_file, tag_names_of)
from distill_core.modality.tagging.modality import IGNORE, TaggingModality, encode_words, score_tags
from distill_core.modality.tagging.models import load_tagger, load_word_tokenizer, match_head
from distill_core.modality.tagging.scores import entity_details, entity_units, f1_of_units
from distill_core.objectives import LossInputs

PLACES = "paris london berlin madrid rome vienna".split()
PEOPLE = [("john", "smith"), ("mary", "jones"), ("ann", "lee"), ("bob", "brown")]
FILLER = "we met in the city today and it was very nice".split()


def make_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences with a place (loc) and a two-word person (per) among filler words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [(w, "O") for w in rng.sample(FILLER, 4)]
        first, last = rng.choice(PEOPLE)
        words.insert(rng.randrange(len(words) + 1), (rng.choice(PLACES), "B-loc"))
        k = rng.randrange(len(words) + 1)
        words[k:k] = [(first, "B-per"), (last, "I-per")]
        out.append(words)
    return out


def write_conll(path, sentences, sep="\t", blank="") -> None:
    path.write_text("\n".join("\n".join(f"{w}{sep}{t}" for w, t in s) + f"\n{blank}" for s in sentences))


@pytest.fixture(scope="module")
def tokenizer():
    return load_word_tokenizer("default")


def save_tiny_tagger(out):
    """A 2-layer, 2-head, 32-wide BERT token classifier (generic labels: its head is new to any data) with the MiniLM
    tokenizer, saved as a model folder `out` (returned)."""
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from distill_core.models import default_teacher_dir
    tok = AutoTokenizer.from_pretrained(default_teacher_dir(), local_files_only=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    BertForTokenClassification._from_config(cfg, attn_implementation="eager").save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory):
    return save_tiny_tagger(tmp_path_factory.mktemp("tagger"))


@pytest.fixture(scope="module")
def tiny_conll(tmp_path_factory):
    path = tmp_path_factory.mktemp("tagdata") / "people.conll"
    write_conll(path, make_sentences(120))
    return path


# ---- reading BIO files ------------------------------------------------------------------------------------------
def test_a_conll_file_is_read_by_sentence_with_the_tag_in_the_last_column(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("-DOCSTART- -X- O O\n\nParis NNP B-NP B-LOC\nis VBZ B-VP O\n \t \n"
                    "New York\tB-LOC\nrocks\tO\n\n\n  \nJohn  B-PER\nSmith I-PER")
    words, tags = read_tagged_file(path, 50)
    assert words == [["Paris", "is"], ["New York", "rocks"], ["John", "Smith"]]
    assert tags == [["B-LOC", "O"], ["B-LOC", "O"], ["B-PER", "I-PER"]]
    assert tag_names_of(tags) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_a_jsonl_file_is_read_one_sentence_a_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"tokens": ["Ann", "sings"], "tags": ["B-PER", "O"]}\n\n'
                    '{"tokens": ["in", "Rome"], "ner_tags": ["O", "B-LOC"]}\n')
    assert read_tagged_file(path, 50) == ([["Ann", "sings"], ["in", "Rome"]], [["B-PER", "O"], ["O", "B-LOC"]])


@pytest.mark.parametrize("text, words", [
    ("Paris\tB-LOC\nis\tPER\n", ["line 2", "'PER'", "no B- or I- prefix", "BIO"]),
    ("Paris\tB-LOC\nrocks\tI-\n", ["line 2", "'I-'", "names no entity type"]),
    ("Paris\tS-LOC\n", ["line 1", "BIOES"]),
    ("Paris\tb-loc\n", ["line 1", "lower case"]),
    ("Paris\tB-LOC\nrocks\n\nhi\tO\n", ["line 2", "one column", "a token and its tag"]),
    ("", ["is empty"]),
    ("\n \n\t\n", ["is empty"]),
    ("-DOCSTART-\tO\n\n", ["no sentences"]),
])
def test_a_bad_conll_file_is_refused_naming_the_line_and_the_fix(tmp_path, text, words):
    path = tmp_path / "bad.conll"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_tagged_file(path, 50)
    for w in words:
        assert w in str(e.value)
    assert "bad.conll" in str(e.value)


@pytest.mark.parametrize("line, words", [
    ('{"tokens": ["a", "b"], "tags": ["O"]}', ["line 1", "2 tokens but 1 tags", "exactly one tag"]),
    ('{"tokens": ["a"], "tags": [3]}', ["line 1", "tag strings"]),
    ('{"tokens": ["a"], "tags": ["LOC"]}', ["line 1", "'LOC'", "no B- or I- prefix"]),
    ('{"text": "a b"}', ["line 1", "\"tokens\" and \"tags\""]),
    ('["a", "O"]', ["line 1", "\"tokens\" and \"tags\""]),
    ('{"tokens": ["a", " "], "tags": ["O", "O"]}', ["line 1", "token 2 is empty"]),
    ('{"tokens": [], "tags": []}', ["line 1", "no tokens"]),
    ('{"tokens": ["a"], "tags": ["O"]', ["line 1", "not valid JSON"]),
])
def test_a_bad_jsonl_file_is_refused_naming_the_line(line, words):
    with pytest.raises(DataError) as e:
        parse_tagged_jsonl(line, "data file s.jsonl")
    for w in words:
        assert w in str(e.value)


def test_a_file_without_entities_is_refused(tmp_path):
    path = tmp_path / "plain.conll"
    write_conll(path, [[("just", "O"), ("words", "O")]] * 10)
    with pytest.raises(DataError, match="holds no entity: every tag is O"):
        load_tag_splits(DataConfig(source=str(path)), TaggingConfig())


def test_other_file_types_and_missing_files_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi,O\n")
    with pytest.raises(DataError, match=r"\.conll.*\.jsonl"):
        read_tagged_file(tmp_path / "a.csv", 50)
    with pytest.raises(DataError, match="does not exist"):
        read_tagged_file(tmp_path / "gone.conll", 50)


def test_a_hub_dataset_is_refused_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="offline"):
        load_tagged(DataConfig(source="someone/ner-dataset"))


# ---- the bundled tweets and their splits ------------------------------------------------------------------------
def test_the_bundled_tweets_are_read_whole():
    words, tags, name = load_tagged(DataConfig(source="ner_tweets"))
    assert name == "ner_tweets" and len(words) == 2394
    flat = [t for s in tags for t in s]
    assert len(flat) == 46_469 and flat.count("O") == 44_007
    assert sum(t.startswith("B-") for t in flat) == 1_496
    assert len(tag_names_of(tags)) == 1 + 2 * 10
    assert load_tagged(DataConfig())[0] == words            # the classification default reads them too


def test_default_splits_hold_every_distinct_tweet_once_and_probe_sentences_with_entities():
    cfg = SessionConfig().with_overrides({"task": "tagging"})
    s = load_tag_splits(cfg.data, cfg.tagging)
    assert (len(s.train_words), len(s.val_words), len(s.test_words)) == (1600, 250, 445)
    keys = [" ".join(w).casefold() for w in s.train_words + s.val_words + s.test_words]
    assert len(set(keys)) == len(keys) == 2295
    assert any("appear more than once" in n for n in s.notices)
    assert len(s.probe_indices) == cfg.data.probe_size
    assert all(any(t != "O" for t in s.val_tags[i]) for i in s.probe_indices)
    again = load_tag_splits(cfg.data, cfg.tagging)
    assert again.fingerprint == s.fingerprint and again.test_words == s.test_words
    other = load_tag_splits(DataConfig(split_seed=1), TaggingConfig())
    assert other.fingerprint != s.fingerprint
    named = load_tag_splits(DataConfig(source="ner_tweets"), TaggingConfig())     # the same tweets by their name
    assert named.fingerprint == s.fingerprint and named.test_words == s.test_words
    example = SessionConfig.load(Path(__file__).resolve().parent.parent / "examples" / "tagging.yaml")
    assert load_tag_splits(example.data, example.tagging).fingerprint == s.fingerprint


def test_split_sizes_are_the_users_capped_to_what_the_file_holds(tiny_conll):
    s = load_tag_splits(DataConfig(source=str(tiny_conll), train_size=60, val_size=20, test_size=20), TaggingConfig())
    assert (len(s.train_words), len(s.val_words), len(s.test_words)) == (60, 20, 20)
    assert len(s.extra_words) == 20 and not s.notices
    big = load_tag_splits(DataConfig(source=str(tiny_conll), train_size=500, val_size=100, test_size=100),
                          TaggingConfig())
    total = len(big.train_words) + len(big.val_words) + len(big.test_words)
    assert total <= 120 and len(big.val_words) >= 1 and any("split 70/10/20 instead" in n for n in big.notices)


def test_a_file_smaller_than_the_tagging_sizes_is_tested_on_a_fifth_not_on_what_is_left(tiny_conll):
    # the tagging defaults (1,600 / 250 / the rest) on a file of 120 sentences: the rest would be one sentence
    s = load_tag_splits(DataConfig(source=str(tiny_conll)), TaggingConfig())
    sizes = (len(s.train_words), len(s.val_words), len(s.test_words))
    assert sizes == (84, 12, 24) and any("split 70/10/20 instead" in n for n in s.notices)
    # a file the sizes fit with room to spare still tests on every sentence left
    roomy = TaggingConfig(train_size=60, val_size=20)
    r = load_tag_splits(DataConfig(source=str(tiny_conll)), roomy)
    assert (len(r.train_words), len(r.val_words), len(r.test_words)) == (60, 20, 40) and not r.notices


# ---- sub-words: the first sub-token of a word carries its tag -------------------------------------------------
def test_the_first_sub_token_of_each_word_carries_its_tag_and_the_rest_are_ignored(tokenizer):
    words = ["unbelievableness", "in", "Paris"]
    tags = ["O", "O", "B-LOC"]
    splits = load_tag_splits_from([words], [tags])
    m = TaggingModality(tokenizer, splits, 64)
    pieces = m.tokenizer.convert_ids_to_tokens(m.ids["val"][0])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and len(pieces) > len(words) + 2
    starts = m.starts["val"][0]
    target = m.targets["val"][0]
    ids = {t: i for i, t in enumerate(splits.tag_names)}
    assert [target[s] for s in starts] == [ids[t] for t in tags]
    assert [pieces[s] for s in starts] == ["unbelievable", "in", "paris"]
    assert sum(t != IGNORE for t in target) == len(words)         # later pieces and [CLS] / [SEP]: ignored
    assert target[0] == target[-1] == IGNORE and target[starts[0] + 1] == IGNORE
    batch = m.batch("val", [0], torch.device("cpu"))
    assert batch.labels.shape == batch.mask.shape and batch.labels[0].tolist() == target


def test_words_past_max_length_are_not_read_and_count_as_o(tokenizer):
    enc = encode_words(tokenizer, [["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]], 8)
    assert len(enc.ids[0]) == 8 and enc.truncated == 1 and enc.words_cut == 4
    assert enc.starts[0][6:] == [-1, -1, -1, -1]
    logits = [torch.zeros(8, 3)]
    target = [[IGNORE] + [1] * 6 + [IGNORE]]
    out = score_tags(logits, target, enc.starts, [["B-X"] * 10], ["O", "B-X", "I-X"])
    assert out["predictions"][0][6:] == ["O"] * 4


def load_tag_splits_from(words, tags):
    """TagSplits holding the sentences in validation only (for encoding checks)."""
    from distill_core.modality.tagging.data import TagSplits
    return TagSplits([], [], words, tags, [], [], tag_names_of(tags), [0], "test")


# ---- per-token losses on a tagging batch -------------------------------------------------------------------------
def test_per_token_ce_and_logit_kd_on_a_tagging_batch_match_a_hand_computation(tokenizer):
    splits = load_tag_splits_from([["unbelievableness", "in", "Paris"], ["Rome"]], [["O", "O", "B-LOC"], ["B-LOC"]])
    m = TaggingModality(tokenizer, splits, 64)
    batch = m.batch("val", [0, 1], torch.device("cpu"))
    torch.manual_seed(0)
    b, t = batch.labels.shape
    student, teacher = torch.randn(b, t, 3), torch.randn(b, t, 3)
    inp = LossInputs(student, batch.labels, batch.mask, 2.0, teacher_logits=teacher)
    scored = [(i, j, int(batch.labels[i, j])) for i in range(b) for j in range(t) if batch.labels[i, j] != IGNORE]
    assert len(scored) == 4                                           # one per word, padding left out
    ce = sum(-F.log_softmax(student[i, j], -1)[y] for i, j, y in scored) / len(scored)
    assert math.isclose(float(objectives.ce(inp)), float(ce), rel_tol=1e-6)
    kl = []
    for i, j, _ in scored:
        p, q = F.softmax(teacher[i, j] / 2.0, -1), F.softmax(student[i, j] / 2.0, -1)
        kl.append(float((p * (p.log() - q.log())).sum()))
    assert math.isclose(float(objectives.logit_kd(inp)), np.mean(kl) * 4.0, rel_tol=1e-5)


def test_the_teachers_per_token_outputs_survive_the_disk_and_pad_to_a_batch():
    from distill_core.modality.tagging.outputs import TokenOutputs, pack, unpack
    torch.manual_seed(0)
    lengths = [3, 5]
    out = TokenOutputs([torch.randn(t, 4) for t in lengths], [torch.rand(2, 1, t, t).half() for t in lengths],
                       [torch.randn(2, t, 8).half() for t in lengths], None)
    back = unpack(pack(out, lengths), lengths, 4, {"attention": True, "hidden": True, "scores": False})
    for a, b in zip(out.logits + out.attention + out.hidden, back.logits + back.attention + back.hidden):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no scores"):
        unpack(pack(out, lengths), lengths, 4, {"attention": False, "hidden": False, "scores": True})
    batch = back.batch([1, 0], 5, torch.device("cpu"))
    assert batch.logits.shape == (2, 5, 4) and torch.equal(batch.logits[1, :3], out.logits[0])
    assert batch.logits[1, 3:].abs().sum() == 0 and batch.attention.shape == (2, 2, 1, 5, 5)


# ---- entity scores -------------------------------------------------------------------------------------------
def random_tags(rng, n_sent: int) -> list[list[str]]:
    names = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    return [[rng.choice(names) for _ in range(rng.randint(1, 9))] for _ in range(n_sent)]


@pytest.mark.parametrize("seed", range(5))
def test_units_sum_to_seqevals_micro_f1(seed):
    rng = random.Random(seed)
    gold = random_tags(rng, 60)
    pred = [[t if rng.random() < 0.6 else rng.choice(["O", "B-PER", "I-LOC", "B-LOC"]) for t in s] for s in gold]
    units = entity_units(gold, pred)
    assert math.isclose(f1_of_units(units), f1_score(gold, pred), abs_tol=1e-12)
    tp, n_pred, n_gold = np.sum(units, axis=0)
    assert math.isclose(tp / n_pred, precision_score(gold, pred), abs_tol=1e-12)
    assert math.isclose(tp / n_gold, recall_score(gold, pred), abs_tol=1e-12)
    half = slice(0, 30)                       # any subset of sentences: that subset's F1
    assert math.isclose(f1_of_units(units[half]), f1_score(gold[half], pred[half]), abs_tol=1e-12)


def test_details_hold_micro_scores_per_type_and_token_accuracy():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["O", "B-PER"]]
    d = entity_details(gold, pred)
    assert math.isclose(d["precision"], 1 / 2) and math.isclose(d["recall"], 1 / 3)
    assert math.isclose(d["f1"], 2 * 1 / (2 + 3))
    assert math.isclose(d["token_accuracy"], 4 / 6)
    assert d["per_type"]["PER"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert d["per_type"]["LOC"]["support"] == 2 and d["per_type"]["LOC"]["f1"] == 0.0
    json.dumps(d)


def test_a_typed_sentence_is_split_into_words_and_tags_into_entity_spans():
    assert words_of("Saw @paulwalk at the Empire State Building! It's http://bit.ly/x #nyc") == [
        "Saw", "@paulwalk", "at", "the", "Empire", "State", "Building", "!", "It", "'s", "http://bit.ly/x", "#nyc"]
    words = ["Ann", "Lee", "saw", "New", "York", "and", "Rome"]
    assert spans(words, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "I-LOC"]) == [
        ("Ann Lee", "PER"), ("saw", None), ("New York", "LOC"), ("and", None), ("Rome", "LOC")]


def test_the_teachers_learning_rate_left_at_the_text_default_is_taggings_own():
    from distill_core.modality.tagging.teacher import tagging_teacher_config
    cfg = SessionConfig().with_overrides({"task": "tagging"})
    assert tagging_teacher_config(cfg).finetune_lr == cfg.tagging.finetune_lr == 1e-4
    assert tagging_teacher_config(cfg.with_overrides({"teacher.finetune_lr": 3e-5})).finetune_lr == 3e-5
    with pytest.raises(ConfigError, match="tagging.finetune_lr"):
        cfg.with_overrides({"tagging.finetune_lr": 0})


# ---- the teacher's head answers with the data's tags ----------------------------------------------------------
def test_a_head_trained_for_the_same_tags_in_another_order_is_reordered_and_other_tags_get_a_new_head(tiny_tagger):
    tags = ["O", "B-loc", "I-loc"]
    model, head_new = load_tagger(str(tiny_tagger), tags)
    assert head_new and model.config.id2label == {0: "O", 1: "B-loc", 2: "I-loc"}
    ids = torch.tensor([[101, 3000, 102]])
    before = model(input_ids=ids).logits.detach()
    match_head(model, ["I-loc", "O", "B-loc"])
    after = model(input_ids=ids).logits.detach()
    assert torch.allclose(after, before[..., [2, 0, 1]], atol=1e-6)
    assert match_head(model, ["O", "B-per", "I-per"]) is True


# ---- a whole tagging session ------------------------------------------------------------------------------------
def tagging_config(teacher, data, **variants) -> SessionConfig:
    return SessionConfig.from_dict({
        "task": "tagging",
        "teacher": {"source": str(teacher), "finetune": "always", "finetune_epochs": 2, "finetune_lr": 1e-2,
                    "finetune_min_steps": 100},
        "student": {"layers": 2, "heads": 2, "hidden": 16, "intermediate": 32, "init": "random"},
        "data": {"source": str(data), "train_size": 64, "val_size": 24, "test_size": 24, "max_length": 32,
                 "probe_size": 3},
        "variants": [{"name": "baseline", "losses": {"ce": 1}},
                     {"name": "distilled", "losses": {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 1.0,
                                                      "hidden_mse": 0.1}}],
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "seed": 0, "device": "cpu", "min_steps": 60},
    })


def test_a_tiny_tagging_session_writes_entity_f1_details_and_paired_comparisons(tmp_path, tiny_tagger, tiny_conll):
    torch.set_num_threads(1)
    store = RunStore(tmp_path / "runs")
    run_id = run_session(tagging_config(tiny_tagger, tiny_conll), store)
    run = store.open(run_id)
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["status"] == "done" and summary["test_size"] == 24
    assert summary["metric"] == {"name": "entity F1", "short": "F1", "higher": True}
    for model in ("teacher", "baseline", "distilled"):
        d = summary["details"][model]
        assert 0.5 < summary["accuracy"][model] <= 1.0 and d["f1"] == summary["accuracy"][model]   # it learns
        assert {"precision", "recall", "f1", "token_accuracy", "per_type"} <= set(d)
        assert set(d["per_type"]) <= {"loc", "per"}
    paired = summary["paired"]["distilled"]
    assert {"n", "ref_accuracy", "accuracy", "diff", "lo", "hi", "p", "verdict"} <= set(paired)
    assert paired["n"] == 24 and math.isclose(paired["accuracy"], summary["accuracy"]["distilled"], abs_tol=1e-9)
    preds = json.loads((run.path / "predictions.json").read_text())
    assert preds["statistic"] == "f1" and len(preds["labels"]) == 24
    for model, answers in preds["predictions"].items():
        assert [len(a) for a in answers] == [len(g) for g in preds["labels"]]
        assert math.isclose(f1_of_units(preds["units"][model]), f1_score(preds["labels"], answers), abs_tol=1e-12)
    probe = json.loads((run.path / "probe.json").read_text())
    assert probe["modality"] == "tagging" and probe["metric"]["name"] == "entity F1"
    assert len(probe["words"]) == 3 and all(len(w) == len(t) for w, t in zip(probe["words"], probe["labels"]))
    assert all(len(tok) > max(s) for tok, s in zip(probe["tokens"], probe["word_starts"]))
    assert any("first sub-token" in n for n in summary["notices"])
    metrics = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert {r["epoch"] for r in metrics} == set(range(summary["epochs"] + 1)) and all(r["attention"] for r in metrics)

    from distill_core.reopen import reopen
    finished = reopen(run)
    modality = finished.task()
    student = finished.student("distilled")
    again = modality.predict(student, "test", torch.device("cpu"), False)
    assert math.isclose(again["accuracy"], summary["accuracy"]["distilled"], abs_tol=1e-9)
    assert finished.teacher().config.id2label[0] == "O"
    assert finished.max_length == 32 == finished.run_models().max_length     # a typed sentence is cut as the run's
    words = words_of("we met john smith in paris today")
    tokens, maps, tagged, starts = tag_sentence(finished.run_models(), words)
    assert tokens[0] == "[CLS]" and [tokens[s] for s in starts] == words
    assert set(maps) == set(tagged) == {"teacher", "baseline", "distilled"}
    assert all(m.shape[-1] == len(tokens) for m in maps.values())
    shown = spans(words, tagged["teacher"])
    assert ("john smith", "per") in shown and ("paris", "loc") in shown

    second = json.loads((store.open(run_session(tagging_config(tiny_tagger, tiny_conll), store)).path /
                         "summary.json").read_text())
    assert second["teacher_cached"] and second["teacher_outputs_cached"]        # fine-tuned and run once, reused
    assert second["accuracy"] == summary["accuracy"]


def test_a_tagging_runs_inputs_are_cut_at_the_tagging_limit_unless_data_sets_its_own():
    from distill_core.modality.registry import task_class
    cfg = SessionConfig(task="tagging")
    assert task_class("tagging").input_length(cfg) == cfg.tagging.max_length == 128
    assert task_class("tagging").input_length(cfg.with_overrides({"data.max_length": 40})) == 40
    assert task_class("text").input_length(SessionConfig()) == SessionConfig().data.max_length


def test_what_is_built_for_one_label_per_input_is_refused_by_the_tagging_task(tiny_tagger, tiny_conll):
    from distill_core.modality.registry import task_for
    task = task_for(tagging_config(tiny_tagger, tiny_conll))
    with pytest.raises(ConfigError, match="one teacher"):
        task.check_teacher_configs(None, [task.config, task.config])
    with pytest.raises(ConfigError, match="text classification and images"):
        task.robustness({}, None, torch.device("cpu"), None)
