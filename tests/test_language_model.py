"""Language models (distill_core/modality/language_model/): the objectives computed by hand, the causal masking of
the attention comparison, seeded sampling, the data and its refusals, and a tiny session end to end."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from distill_core import objectives, stats
from distill_core.config import SessionConfig
from distill_core.errors import ConfigError, DataError
from distill_core.objectives import IGNORED, LossInputs, generalized_jsd
from distill_core.modality.language_model.data import passages_of_text, split_passages
from distill_core.modality.language_model.models import build_gpt2, check_causal, copy_teacher_layers, student_from
from distill_core.modality.language_model.sampling import sample
from distill_core.modality.translation.divergence import probe_kind_metrics
from distill_core.modality.translation.tokenizer import train_tokenizer

TEXT = ("In the beginning God created the heavens and the earth. The earth was formless and empty. "
        "Darkness was on the surface of the deep. God said, let there be light, and there was light. ") * 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([TEXT], 60, "bpe")


@pytest.fixture(scope="module")
def tiny_gpt(tokenizer):
    return build_gpt2(tokenizer, layers=2, heads=2, hidden=16, context=32, intermediate=32, dropout=0.0, seed=0)


# ---- the divergences, by hand ------------------------------------------------------------------------------------
T_PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
S_PROBS = np.array([[0.5, 0.3, 0.2], [0.3, 0.3, 0.4]])


def kl(p, q):
    return float(np.sum(p * np.log(p / q)))


def test_the_generalized_jsd_is_the_forward_kl_at_beta_0_the_reverse_at_1_and_the_mixture_between():
    s, t = torch.tensor(np.log(S_PROBS)), torch.tensor(np.log(T_PROBS))
    for i in range(2):
        p, q = T_PROBS[i], S_PROBS[i]
        assert generalized_jsd(s, t, 0.0)[i].item() == pytest.approx(kl(p, q))           # KL(teacher || student)
        assert generalized_jsd(s, t, 1.0)[i].item() == pytest.approx(kl(q, p))           # KL(student || teacher)
        for beta in (0.5, 0.1, 0.9):
            m = beta * p + (1 - beta) * q
            assert generalized_jsd(s, t, beta)[i].item() == pytest.approx(beta * kl(p, m) + (1 - beta) * kl(q, m))
    # at 0.5 it is the Jensen-Shannon divergence: symmetric
    assert generalized_jsd(s, t, 0.5).tolist() == pytest.approx(generalized_jsd(t, s, 0.5).tolist())
    assert generalized_jsd(t, t, 0.3).abs().max().item() < 1e-12


def lm_inputs(labels, temperature=1.0, extra=None):
    """Two blocks of 2 positions over 3 tokens: the by-hand distributions at positions (0, 0) and (1, 1); the other
    two positions hold distributions far apart, so leaving them out matters."""
    s = torch.zeros(2, 2, 3, dtype=torch.float64)
    t = torch.zeros(2, 2, 3, dtype=torch.float64)
    s[0, 0], t[0, 0] = torch.tensor(np.log(S_PROBS[0])), torch.tensor(np.log(T_PROBS[0]))
    s[1, 1], t[1, 1] = torch.tensor(np.log(S_PROBS[1])), torch.tensor(np.log(T_PROBS[1]))
    s[0, 1], t[0, 1] = torch.tensor([9.0, 0, 0]), torch.tensor([0, 0, 9.0])
    s[1, 0], t[1, 0] = torch.tensor([0, 9.0, 0]), torch.tensor([9.0, 0, 0])
    return LossInputs(s, labels, torch.ones(2, 2), temperature=temperature, teacher_logits=t,
                      extra=extra or {})


def test_forward_and_reverse_kl_and_gkd_read_only_the_scored_positions():
    labels = torch.tensor([[0, IGNORED], [IGNORED, 2]])
    inp = lm_inputs(labels)
    forward = (kl(T_PROBS[0], S_PROBS[0]) + kl(T_PROBS[1], S_PROBS[1])) / 2
    reverse = (kl(S_PROBS[0], T_PROBS[0]) + kl(S_PROBS[1], T_PROBS[1])) / 2
    assert objectives.get("logit_kd").fn(inp).item() == pytest.approx(forward)
    assert objectives.get("reverse_kl").fn(inp).item() == pytest.approx(reverse)
    for beta, expected in ((0.0, forward), (1.0, reverse)):
        inp = lm_inputs(labels, extra={"student": {"beta": beta}})
        assert objectives.get("gkd").fn(inp).item() == pytest.approx(expected)
    # a temperature divides both logits; reverse KL is multiplied by T^2 as the forward KL is
    s, t = np.log(S_PROBS) / 2, np.log(T_PROBS) / 2
    soft = [np.exp(x) / np.exp(x).sum(-1, keepdims=True) for x in (s, t)]
    by_hand = 4 * (kl(soft[0][0], soft[1][0]) + kl(soft[0][1], soft[1][1])) / 2
    assert objectives.get("reverse_kl").fn(lm_inputs(labels, temperature=2.0)).item() == pytest.approx(by_hand)


def test_on_policy_learns_on_the_sampled_positions_when_the_sampler_draws_and_on_the_text_when_it_does_not():
    labels = torch.tensor([[0, IGNORED], [IGNORED, 2]])
    text = objectives.get("gkd").fn(lm_inputs(labels, extra={"student": {"beta": 0.5}})).item()
    off = lm_inputs(labels, extra={"student": {"beta": 0.5, "sample_on_policy": lambda: None}})
    assert objectives.get("on_policy").fn(off).item() == pytest.approx(text)
    drawn = {"student_logits": torch.tensor(np.log(S_PROBS))[None], "teacher_logits": torch.tensor(np.log(T_PROBS))[None],
             "mask": torch.tensor([[0, 1]])}
    on = lm_inputs(labels, extra={"student": {"beta": 0.0, "sample_on_policy": lambda: drawn}})
    assert objectives.get("on_policy").fn(on).item() == pytest.approx(kl(T_PROBS[1], S_PROBS[1]))


# ---- causal attention ------------------------------------------------------------------------------------------
def causal_rows(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 1, 1, t, t), generator=g) + 0.1
    x = x * torch.tril(torch.ones(t, t))
    return x / x.sum(-1, keepdim=True)


def test_causal_attention_kl_compares_the_lower_triangle_only():
    p, q = causal_rows(4, 0), causal_rows(4, 1)
    mask = torch.tensor([[1, 1, 1, 0]])                               # the last position is padding
    inp = LossInputs(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), mask, teacher_attention=p,
                     student_attention=q)
    clean = objectives.get("causal_attention_kl").fn(inp).item()
    by_hand = np.mean([kl(p[0, 0, 0, r, :r + 1].numpy(), q[0, 0, 0, r, :r + 1].numpy()) for r in range(3)])
    assert clean == pytest.approx(by_hand, rel=1e-5)
    # weight above the diagonal (which a causal model never reads) and on the padded key change nothing
    noisy_p, noisy_q = p.clone(), q.clone()
    upper = torch.triu(torch.ones(4, 4), 1).bool()
    noisy_p[..., upper] = 0.3
    noisy_q[..., upper] = 0.05
    noisy_q[..., 3] = 0.2
    inp = LossInputs(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), mask, teacher_attention=noisy_p,
                     student_attention=noisy_q)
    assert objectives.get("causal_attention_kl").fn(inp).item() == pytest.approx(clean, rel=1e-5)
    # the probe metrics too (every position real there): weight above the diagonal changes nothing
    upper_p, upper_q = p.clone(), q.clone()
    upper_p[..., upper] = 0.3
    upper_q[..., upper] = 0.05
    pairs = [(0, 0)]
    a = probe_kind_metrics([p[0].numpy()], [q[0].numpy()], pairs, "direct", 1, causal=True)
    b = probe_kind_metrics([upper_p[0].numpy()], [upper_q[0].numpy()], pairs, "direct", 1, causal=True)
    assert set(a) >= {"kl", "js", "mse", "cosine"} and np.asarray(a["kl"]).shape == (1, 1)
    for name in a:
        assert np.allclose(a[name], b[name], atol=1e-6), name
    assert a["kl"][0][0] == pytest.approx(np.mean([kl(p[0, 0, 0, r, :r + 1].numpy(), q[0, 0, 0, r, :r + 1].numpy())
                                                   for r in range(4)]), rel=1e-5)


# ---- sampling ----------------------------------------------------------------------------------------------------
def test_sampling_is_seeded_apart_from_the_global_stream_and_left_padding_changes_nothing(tiny_gpt, tokenizer):
    prompts = [tokenizer("In the beginning")["input_ids"][:-1], tokenizer("God said")["input_ids"][:-1]]
    torch.manual_seed(123)
    a = sample(tiny_gpt, prompts, 8, seed=5)
    torch.manual_seed(999)
    b = sample(tiny_gpt, prompts, 8, seed=5)
    assert a == b and all(len(r) == 8 for r in a)
    assert sample(tiny_gpt, prompts, 8, seed=6) != a
    # greedy: each token the argmax of a full pass over the text so far; a prompt batched with a longer one
    # (left-padded) continues as it does alone
    greedy = sample(tiny_gpt, prompts, 6, temperature=0)
    for prompt, row in zip(prompts, greedy):
        assert sample(tiny_gpt, [prompt], 6, temperature=0)[0] == row
        ids = list(prompt)
        for tok in row:
            with torch.no_grad():
                nxt = int(tiny_gpt(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            assert nxt == tok
            ids.append(tok)
    # never beyond the context
    assert len(sample(tiny_gpt, [prompts[0]], 100, seed=0)[0]) == 32 - len(prompts[0])


# ---- models ------------------------------------------------------------------------------------------------------
def test_an_encoder_only_or_encoder_decoder_teacher_is_refused_with_the_fix():
    from transformers import BertConfig, MarianConfig
    with pytest.raises(ConfigError, match="encoder-only model \\(bert\\).*causal.*gpt2"):
        check_causal(BertConfig(), "sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ConfigError, match="encoder-decoder.*translation task"):
        check_causal(MarianConfig(), "Helsinki-NLP/opus-mt-en-fr")


def test_a_student_starts_from_alternate_teacher_layers_as_distilgpt2_did(tiny_gpt):
    teacher = build_gpt2(_tok(), layers=4, heads=2, hidden=16, context=32, intermediate=32, dropout=0.0, seed=1)
    student = student_from(teacher, 2, 2, 16, 32, 0.0)
    copy_teacher_layers(student, teacher, [1, 3])
    for j, i in enumerate([1, 3]):
        for (k, a), (_, b) in zip(student.transformer.h[j].state_dict().items(),
                                  teacher.transformer.h[i].state_dict().items()):
            assert torch.equal(a, b), k
    assert torch.equal(student.transformer.wte.weight, teacher.transformer.wte.weight)


def _tok():
    return train_tokenizer([TEXT], 60, "bpe")


# ---- data --------------------------------------------------------------------------------------------------------
def test_a_plain_text_is_cut_into_paragraphs_or_runs_of_words_and_split_by_passage():
    paras = "\n\n".join(f"Paragraph {i} says something about {i * 7}." for i in range(20))
    p = passages_of_text(paras, "notes.txt")
    assert len(p.texts) == 20 and p.texts[3] == "Paragraph 3 says something about 21."
    one = passages_of_text(" ".join(["word"] * 450), "one.txt")
    assert [len(t.split()) for t in one.texts] == [200, 200, 50] and "fewer than 10" in one.notices[0]
    s = split_passages(p, (100, 2, 4), 0, 2, ["x"])
    assert (len(s.train), len(s.val), len(s.test)) == (14, 2, 4)
    assert not (set(s.train) & set(s.test)) and not (set(s.val) & set(s.test))
    with pytest.raises(DataError, match="no text"):
        passages_of_text("\n\n  \n", "empty.txt")


def test_a_text_too_short_for_the_context_is_refused_before_any_training(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("\n\n".join(f"A short line number {i}." for i in range(12)))
    cfg = SessionConfig.from_dict({"task": "language_model", "data": {"source": str(f), "max_length": 64}})
    from distill_core.modality.registry import task_for
    with pytest.raises(DataError, match="too short for the context length.*data.max_length"):
        task_for(cfg).load_data()


def test_the_ratio_statistic_sums_the_counts_of_every_passage():
    ref = [[3, 10], [1, 10], [0, 5]]
    var = [[5, 10], [2, 10], [1, 5]]
    r = stats.paired_units("ratio", ref, var, seed=0)
    assert r["ref_accuracy"] == pytest.approx(4 / 25) and r["accuracy"] == pytest.approx(8 / 25)
    assert r["diff"] == pytest.approx(4 / 25) and r["variant_only"] == 3 and r["lo"] <= r["diff"] <= r["hi"]


# ---- a tiny session end to end -----------------------------------------------------------------------------------
def tiny_lm_config(**over) -> dict:
    d = {"task": "language_model", "name": "tiny language model",
         "data": {"source": "bible", "train_size": 24, "val_size": 4, "test_size": 6, "probe_size": 2,
                  "max_length": 24},
         "language_model": {"vocab_size": 200, "teacher_layers": 2, "teacher_heads": 2, "teacher_hidden": 16,
                            "teacher_intermediate": 32, "teacher_epochs": 1, "samples": 6, "prompt_tokens": 8},
         "teacher": {"finetune_min_steps": 0, "finetune_on": "train"},
         "student": {"layers": 1, "heads": 2, "hidden": 8, "intermediate": 16, "init": "random"},
         "variants": [{"name": "baseline", "losses": {"ce": 1}},
                      {"name": "forward_kl", "losses": {"ce": .5, "logit_kd": .5}},
                      {"name": "reverse_kl", "losses": {"ce": .5, "reverse_kl": .5}},
                      {"name": "on_policy", "losses": {"ce": .5, "on_policy": .5}},
                      {"name": "seq_kd", "losses": {"ce": .5, "seq_kd": .5}},
                      {"name": "att", "losses": {"ce": .5, "causal_attention_kl": 1, "hidden_mse": 1}}],
         "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "seed": 0, "device": "cpu", "min_steps": 0}}
    d.update(over)
    return d


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """(store, run_id) of a 2-epoch language-model session with six variants, written by the real engine."""
    os.environ["ADS_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    from distill_core import RunStore, run_session
    store = RunStore(tmp_path_factory.mktemp("lm_runs"))
    return store, run_session(SessionConfig.from_dict(tiny_lm_config()), store)


def test_a_tiny_language_model_session_scores_every_model_and_pairs_them_by_passage(lm_run):
    store, run_id = lm_run
    folder = store.root / run_id
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "done", summary.get("error")
    names = ["teacher", "baseline", "forward_kl", "reverse_kl", "on_policy", "seq_kd", "att"]
    assert summary["metric"]["name"] == "next-token accuracy"
    assert set(summary["details"]) == set(names)
    teacher = summary["details"]["teacher"]
    assert teacher["kl_to_teacher"] == 0 and teacher["agreement"] == 1
    for n in names[1:]:
        d = summary["details"][n]
        assert d["perplexity"] > 1 and d["kl_to_teacher"] > 0 and 0 <= d["agreement"] <= 1
        assert d["passages"] == 6 and len(d["passage_units"]) == 6 and len(d["samples"]) == 2
        nll = sum(u[0] for u in d["passage_units"]) / sum(u[3] for u in d["passage_units"])
        assert math.exp(nll) == pytest.approx(d["perplexity"], rel=1e-3)
    for name, p in summary["paired"].items():
        assert p["statistic"] == "ratio" and p["n"] == 6 and p["lo"] <= p["diff"] <= p["hi"]
        assert p["accuracy"] == pytest.approx(summary["accuracy"][name])
    losses = {json.loads(line)["student"]: json.loads(line)["train_loss"]
              for line in (folder / "metrics.jsonl").read_text().splitlines()}
    assert {"causal_attention_kl", "hidden_mse"} <= set(losses["att"]) and "on_policy" in losses["on_policy"]
    assert "seq_kd" in losses["seq_kd"] and "reverse_kl" in losses["reverse_kl"]
    probe = json.loads((folder / "probe.json").read_text())
    assert probe["modality"] == "language_model" and len(probe["sample_prompts"]) == 2
    maps = np.load(folder / "attention" / "teacher.npz")
    first = maps[maps.files[0]]
    assert np.allclose(np.triu(first, 1), 0)           # causal: nothing above the diagonal
    from distill_core.modality.language_model.scores import compare_perplexity
    c = compare_perplexity(summary["details"]["baseline"], summary["details"]["forward_kl"])
    assert c["lo"] <= c["ratio"] <= c["hi"] and c["n"] == 6


def test_a_finished_language_model_run_reopens_and_continues_a_prompt(lm_run):
    from distill_core.modality.language_model.analysis import continue_with_attention
    from distill_core.reopen import reopen
    store, run_id = lm_run
    fr = reopen(store.open(run_id))
    modality = fr.task()
    assert modality.size("train") == 0 and len(modality.passages["test"]) == 6
    recorded = json.loads((store.root / run_id / "summary.json").read_text())
    student = fr.student("forward_kl")
    assert modality.predict(student, "test", "cpu")["accuracy"] == pytest.approx(recorded["accuracy"]["forward_kl"])
    rm = fr.run_models()
    out = continue_with_attention(rm.models["forward_kl"], rm.tokenizer, "In the beginning", 5, seed=3,
                                  context=rm.max_length)
    again = continue_with_attention(rm.models["forward_kl"], rm.tokenizer, "In the beginning", 5, seed=3,
                                    context=rm.max_length)
    assert out["continuation"] == again["continuation"] and out["maps"].shape[-1] == len(out["tokens"])
    assert np.allclose(np.triu(out["maps"], 1), 0)
    with pytest.raises(DataError, match="type a prompt"):
        continue_with_attention(student, rm.tokenizer, "   ")


def test_the_example_file_is_the_default_session_written_out():
    a = SessionConfig.load(os.path.join(os.path.dirname(__file__), "..", "examples", "language_model.yaml"))
    b = SessionConfig(task="language_model")
    assert (a.variants, a.train, a.language_model, a.objectives) == (b.variants, b.train, b.language_model,
                                                                     b.objectives)


def test_a_student_with_another_tokenizer_and_an_encoder_only_teacher_are_refused(tmp_path, tokenizer, tiny_gpt):
    from distill_core.models import default_teacher_dir
    from distill_core.modality.language_model.task import LanguageModelTask, LMData
    from distill_core.preflight import preflight
    from distill_core.teacher import PreparedTeacher
    other = train_tokenizer([TEXT.upper()], 50, "bpe")
    folder = tmp_path / "student"
    build_gpt2(other, 1, 2, 8, 32, 16, 0.0, seed=0).save_pretrained(folder)
    other.save_pretrained(folder)
    cfg = SessionConfig.from_dict({"task": "language_model", "student": {"source": str(folder)}})
    data = LMData(splits=None, teacher=PreparedTeacher(tiny_gpt, tokenizer, "x", False, False))
    with pytest.raises(ConfigError, match="other tokens than the teacher.*share the teacher's tokenizer"):
        LanguageModelTask(cfg).initial_student(data, tiny_gpt, "uniform")
    # the bundled MiniLM (an encoder) named as a language model's teacher: refused before any work
    cfg = SessionConfig.from_dict({"task": "language_model", "teacher": {"source": str(default_teacher_dir())}})
    with pytest.raises(ConfigError, match="encoder-only model \\(bert\\)"):
        preflight(cfg)


def test_a_teacher_below_the_labels_only_student_is_named_as_the_problem():
    # on a small file of its own (8.8k words of package descriptions) the language-model teacher scored 2.1% against
    # the labels-only student's 9.4%: the run must say the teacher is the problem
    w = stats.teacher_below_reference({"teacher": 0.021, "baseline": 0.094}, "baseline", "baseline student",
                                      "next-token accuracy")
    assert [x["model"] for x in w] == ["teacher"] and "below the baseline student's (9.4%)" in w[0]["message"]
    assert "language_model.teacher_epochs" in w[0]["message"]
    assert stats.teacher_below_reference({"teacher": 0.3, "baseline": 0.2}, "baseline", "baseline student") == []
    assert stats.teacher_below_reference({"teacher": 0.1}, None, "") == []
