"""Token attributions (integrated gradients), rank correlation and attention agreement, on tiny CPU models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill_core.modality.text.attribution import (Attribution, attention_agreement, attention_attribution_correlation,
                                      attention_to_tokens, compare_attributions, rank_correlation,
                                      token_attributions, top_tokens)
from distill_core.errors import ModelError

TEXT = "a wonderful and moving film with great actors"


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_teacher, local_files_only=True)


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    from transformers import AutoModelForSequenceClassification
    return AutoModelForSequenceClassification.from_pretrained(tiny_teacher, attn_implementation="eager",
                                                              local_files_only=True)


@pytest.fixture(scope="module")
def sharp_model(tokenizer):
    """A tiny BERT with large initial weights, so that its output moves far between baseline and text."""
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=3, initializer_range=0.5)
    torch.manual_seed(0)
    return BertForSequenceClassification._from_config(cfg, attn_implementation="eager").eval()


def _probs(model, ids, mask):
    with torch.no_grad():
        return torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)[0]


def _encode_with_baseline(tokenizer, text):
    enc = tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
    special = enc["special_tokens_mask"].bool()
    baseline = torch.where(special, enc["input_ids"], torch.full_like(enc["input_ids"], tokenizer.pad_token_id))
    return enc["input_ids"], enc["attention_mask"], baseline


# ------------------------------------------------------------------------------------------------ attributions


def test_attribution_shape_tokens_and_defaults(teacher, tokenizer):
    attr = token_attributions(teacher, tokenizer, TEXT, n_steps=8)
    expected = tokenizer.convert_ids_to_tokens(tokenizer(TEXT)["input_ids"])
    assert attr.tokens == expected and attr.tokens[0] == "[CLS]" and attr.tokens[-1] == "[SEP]"
    assert attr.scores.shape == (len(expected),) and attr.raw_scores.shape == (len(expected),)
    assert np.linalg.norm(attr.scores) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(attr.scores, attr.raw_scores / np.linalg.norm(attr.raw_scores), rtol=1e-5)
    assert attr.probs.shape == (2,) and attr.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert attr.target == int(np.argmax(attr.probs))                      # defaults to the predicted class
    assert attr.special_mask.tolist() == [True] + [False] * (len(expected) - 2) + [True]
    assert np.isfinite(attr.delta)


def test_special_tokens_get_no_attribution(teacher, tokenizer):
    # [CLS] and [SEP] are the same in text and baseline, so their path has zero length
    attr = token_attributions(teacher, tokenizer, TEXT, n_steps=8)
    assert attr.raw_scores[0] == 0.0 and attr.raw_scores[-1] == 0.0


def test_model_state_is_restored_and_no_parameter_gradients(tokenizer, tiny_teacher):
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, attn_implementation="eager",
                                                               local_files_only=True)
    model.train()
    token_attributions(model, tokenizer, TEXT, n_steps=4)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_completeness(sharp_model, tokenizer):
    """Attributions before normalisation add up to f(text) - f(baseline)."""
    ids, mask, baseline = _encode_with_baseline(tokenizer, TEXT)
    for target in range(3):
        attr = token_attributions(sharp_model, tokenizer, TEXT, target=target, n_steps=64)
        diff = float(_probs(sharp_model, ids, mask)[target] - _probs(sharp_model, baseline, mask)[target])
        assert abs(diff) > 0.01                                                # a meaningful output change
        assert attr.raw_scores.sum() == pytest.approx(diff, abs=0.01 * abs(diff))
        assert abs(attr.delta) < 0.01 * abs(diff)
        assert attr.delta == pytest.approx(attr.raw_scores.sum() - diff, abs=1e-4)


def test_delta_shrinks_with_more_steps(sharp_model, tokenizer):
    coarse = token_attributions(sharp_model, tokenizer, TEXT, target=1, n_steps=2)
    fine = token_attributions(sharp_model, tokenizer, TEXT, target=1, n_steps=64)
    assert abs(fine.delta) < abs(coarse.delta)


def test_layer_ig_matches_ig_on_manually_computed_embeddings(sharp_model, tokenizer):
    """LayerIntegratedGradients on the word embeddings == IntegratedGradients on inputs_embeds."""
    from captum.attr import IntegratedGradients
    target = 2
    attr = token_attributions(sharp_model, tokenizer, TEXT, target=target, n_steps=16)
    ids, mask, baseline = _encode_with_baseline(tokenizer, TEXT)
    embed = sharp_model.get_input_embeddings()
    with torch.no_grad():
        x, x0 = embed(ids), embed(baseline)                                    # (1, T, D)

    def forward(inputs_embeds, attention_mask):
        logits = sharp_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
        return torch.softmax(logits, -1)[:, target]

    expected, delta = IntegratedGradients(forward).attribute(x, x0, additional_forward_args=(mask,), n_steps=16,
                                                             return_convergence_delta=True)
    np.testing.assert_allclose(attr.raw_scores, expected[0].sum(-1).numpy(), atol=1e-5)
    assert attr.delta == pytest.approx(float(delta[0]), abs=1e-5)


def test_attribution_respects_max_length(teacher, tokenizer):
    attr = token_attributions(teacher, tokenizer, " ".join(["film"] * 50), n_steps=2, max_length=8)
    assert len(attr.tokens) == 8 and attr.tokens[-1] == "[SEP]"


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_text_is_a_clear_error(teacher, tokenizer, text):
    with pytest.raises(ValueError, match="non-empty text"):
        token_attributions(teacher, tokenizer, text)


def test_unknown_target_is_a_clear_error(teacher, tokenizer):
    with pytest.raises(ValueError, match="target class 5 does not exist"):
        token_attributions(teacher, tokenizer, TEXT, target=5, n_steps=2)


# ------------------------------------------------------------------------------------------- rank correlation


def test_rank_correlation_identical_and_reversed():
    a = np.array([0.3, -1.0, 2.5, 0.0, 7.0])
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, 10 * a + 3) == pytest.approx(1.0)           # only the order counts
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_rank_correlation_with_ties_hand_computed():
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): r = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert rank_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))


def test_rank_correlation_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 4, size=12).astype(float)                          # many ties
        b = rng.normal(size=12)
        b[:3] = b[3]
        assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_rank_correlation_mask_and_undefined_cases():
    a = np.array([100.0, 1, 2, 3, -100.0])
    b = np.array([-100.0, 1, 2, 3, 100.0])
    mask = np.array([False, True, True, True, False])                          # leave out [CLS] and [SEP]
    assert rank_correlation(a, b) < 0
    assert rank_correlation(a, b, mask) == pytest.approx(1.0)
    assert math.isnan(rank_correlation([1.0], [2.0]))
    assert math.isnan(rank_correlation(a, b, [True, False, False, False, False]))
    assert math.isnan(rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))    # constant input
    assert math.isnan(rank_correlation([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="one score per token"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="mask"):
        rank_correlation([1, 2, 3], [1, 2, 3], [True, False])


# ---------------------------------------------------------------------------------------------------- attention


def _random_maps(layers, heads, t, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(layers, heads, t, t)) * 2
    e = np.exp(logits)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)                  # (L, H, T, T), rows sum to 1


def test_attention_agreement_identical_is_one_and_different_is_lower():
    teacher = _random_maps(4, 4, 7, seed=0)
    student = _random_maps(2, 2, 7, seed=1)
    assert attention_agreement(teacher, teacher, [(0, 0), (3, 3)]) == pytest.approx(1.0, abs=1e-6)
    # a student whose heads average to the teacher's [CLS] row agrees fully
    same_mean = np.repeat(teacher[[1, 3]].mean(1, keepdims=True), 2, axis=1)
    assert attention_agreement(teacher, same_mean, [(1, 0), (3, 1)]) == pytest.approx(1.0, abs=1e-6)
    score = attention_agreement(teacher, student, [(1, 0), (3, 1)])
    assert 0.0 < score < 1.0
    assert attention_agreement(torch.from_numpy(teacher), torch.from_numpy(student), [(1, 0), (3, 1)]) \
        == pytest.approx(score, abs=1e-6)


def test_attention_agreement_disjoint_rows_is_zero():
    t = np.zeros((1, 2, 4, 4), np.float32)
    s = np.zeros((1, 2, 4, 4), np.float32)
    t[..., 1] = 1.0                                                            # [CLS] attends to token 1 only
    s[..., 2] = 1.0                                                            # ... and to token 2 only
    assert attention_agreement(t, s, [(0, 0)]) == pytest.approx(0.0, abs=1e-6)
    u = np.full((1, 2, 4, 4), 0.25, np.float32)
    assert 0.0 < attention_agreement(t, u, [(0, 0)]) < 1.0


def test_attention_agreement_errors():
    t, s = _random_maps(2, 2, 5, 0), _random_maps(2, 2, 6, 1)
    with pytest.raises(ModelError, match="same tokenizer"):
        attention_agreement(t, s, [(0, 0)])
    with pytest.raises(ValueError, match="at least one"):
        attention_agreement(t, t, [])
    with pytest.raises(ValueError, match="layer 2 does not exist"):
        attention_agreement(t, t, [(2, 0)])
    with pytest.raises(ValueError, match=r"\(layers, heads, T, T\)"):
        attention_agreement(t[0], t[0], [(0, 0)])


def test_attention_to_tokens():
    maps = _random_maps(3, 2, 6, seed=2)
    all_layers = attention_to_tokens(maps)
    assert all_layers.shape == (6,) and all_layers.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(all_layers, maps[:, :, 0, :].mean((0, 1)), rtol=1e-6)
    np.testing.assert_allclose(attention_to_tokens(maps, [2]), maps[2, :, 0, :].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="at least one layer"):
        attention_to_tokens(maps, [])


def test_attention_attribution_correlation(teacher, tokenizer):
    from distill_core.capture import AttentionCapture
    attr = token_attributions(teacher, tokenizer, TEXT, n_steps=4)
    enc = tokenizer([TEXT], return_tensors="pt")
    with torch.no_grad(), AttentionCapture(teacher) as cap:
        teacher(**enc)
        maps = cap.pop_stacked()[0]                                            # (L, H, T, T)
    r = attention_attribution_correlation(maps, attr)
    expected = rank_correlation(attention_to_tokens(maps), np.abs(attr.scores), attr.content_mask())
    assert -1.0 <= r <= 1.0 and r == pytest.approx(expected)
    with pytest.raises(ValueError, match="same text"):
        attention_attribution_correlation(maps[..., :-1, :-1], attr)


# ------------------------------------------------------------------------------------------ teacher vs student


def _attr(scores, target=0, tokens=None):
    scores = np.asarray(scores, dtype=np.float32)
    tokens = tokens or ["[CLS]"] + [f"w{i}" for i in range(len(scores) - 2)] + ["[SEP]"]
    special = np.zeros(len(scores), bool)
    special[[0, -1]] = True
    return Attribution(tokens, scores, target, 0.0, np.array([0.5, 0.5]), special_mask=special)


def test_compare_attributions():
    t = _attr([0.0, 0.9, -0.5, 0.1, 0.3, 0.05, 0.0])
    same = compare_attributions(t, t)
    assert same["spearman"] == pytest.approx(1.0) and same["top_k_overlap"] == 1.0 and same["k"] == 3
    assert same["teacher_top"] == [1, 2, 4] and same["same_target"]            # largest magnitudes first
    s = _attr([0.0, 0.1, 0.2, 0.9, 0.3, -0.6, 0.0], target=1)
    out = compare_attributions(t, s)
    assert out["student_top"] == [3, 5, 4] and out["top_k_overlap"] == pytest.approx(1 / 3)
    assert out["spearman"] == pytest.approx(rank_correlation(t.scores[1:-1], s.scores[1:-1]))
    assert not out["same_target"]


def test_compare_attributions_short_text_and_mismatch():
    short = _attr([0.0, 0.7, 0.0])
    out = compare_attributions(short, short)
    assert out["k"] == 1 and out["top_k_overlap"] == 1.0 and math.isnan(out["spearman"])
    assert top_tokens(_attr([0.0, -0.2, 0.1, 0.0]), k=5) == [1, 2]
    with pytest.raises(ModelError, match="share a tokenizer"):
        compare_attributions(short, _attr([0.0, 0.7, 0.0], tokens=["[CLS]", "x", "[SEP]"]))


def test_teacher_and_student_of_a_finished_run(finished_run):
    """End to end on a run written by the engine: attributions, agreement and comparison of its models."""
    from distill_core.analysis import attention_for_text, load_run_models
    store, run_id = finished_run
    run = store.open(run_id)
    rm = load_run_models(run)
    text = "a brilliant and charming story"
    tokens, maps, _ = attention_for_text(rm, text)
    attrs = {name: token_attributions(model, rm.tokenizer, text, target=1, n_steps=8, max_length=rm.max_length)
             for name, model in rm.models.items()}
    assert all(a.tokens == tokens for a in attrs.values())
    out = compare_attributions(attrs["teacher"], attrs["distilled"])
    assert -1.0 <= out["spearman"] <= 1.0 and 0.0 <= out["top_k_overlap"] <= 1.0
    pairs = run.probe()["pairs"]
    agreement = attention_agreement(maps["teacher"], maps["distilled"], pairs)
    assert 0.0 <= agreement <= 1.0
    assert attention_agreement(maps["teacher"], maps["teacher"], [(t, t) for t, _ in pairs]) == pytest.approx(1.0)


def test_attributions_work_inside_inference_mode(teacher, tokenizer):
    expected = token_attributions(teacher, tokenizer, TEXT, n_steps=4)
    with torch.inference_mode():
        attr = token_attributions(teacher, tokenizer, TEXT, n_steps=4)
    np.testing.assert_allclose(attr.raw_scores, expected.raw_scores, atol=1e-6)
