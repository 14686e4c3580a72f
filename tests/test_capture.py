import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distill_core.capture import AttentionCapture
from distill_core.errors import ModelError


def tiny_bert(impl="eager"):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    return BertForSequenceClassification._from_config(cfg, attn_implementation=impl).eval()


def test_captured_maps_equal_output_attentions():
    model = tiny_bert()
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]])
    mask = (ids != 0).long()
    with AttentionCapture(model) as cap:
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        maps = cap.pop()
    assert len(maps) == len(out.attentions) == 3
    for a, b in zip(maps, out.attentions):
        assert torch.equal(a, b)
    rows = maps[0].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)


def test_selected_layers_and_output_unchanged():
    model = tiny_bert()
    ids = torch.tensor([[2, 5, 7, 3]])
    plain = model(input_ids=ids).logits
    with AttentionCapture(model, layers=[2, 0]) as cap:
        hooked = model(input_ids=ids).logits
        stacked = cap.pop_stacked()
    assert torch.equal(plain, hooked)
    assert stacked.shape == (1, 2, 2, 4, 4)      # (B, L, H, T, T)
    # hooks are removed on exit
    assert all(not m._forward_hooks for m in AttentionCapture(model).modules)


def test_sdpa_model_fails_clearly():
    model = tiny_bert("sdpa")
    with pytest.raises(ModelError, match="eager"):
        with AttentionCapture(model):
            model(input_ids=torch.tensor([[2, 5, 3]]))


def test_unknown_layer_rejected():
    with pytest.raises(ModelError, match="has 3 layers"):
        AttentionCapture(tiny_bert(), layers=[5])


def test_captured_rows_are_probabilities_in_training_mode_and_training_is_unchanged():
    """transformers' eager attention returns weights after dropout; the session reads them before it."""
    from distill_core.models import set_attention_backend
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, attention_probs_dropout_prob=0.5)
    torch.manual_seed(0)
    model = BertForSequenceClassification._from_config(cfg, attn_implementation="eager").train()
    ids = torch.tensor([[2, 5, 7, 9, 3, 4, 8, 6], [2, 6, 3, 4, 5, 0, 0, 0]])
    mask = (ids != 0).long()
    torch.manual_seed(1)
    with AttentionCapture(model) as cap:
        plain = model(input_ids=ids, attention_mask=mask).logits
        dropped = cap.pop()
    zeros = (dropped[0][0] == 0).float().mean().item()
    assert zeros > 0.2                                   # what the losses used to compare: thinned maps
    set_attention_backend(model, eager=True)
    torch.manual_seed(1)
    with AttentionCapture(model) as cap:
        ours = model(input_ids=ids, attention_mask=mask).logits
        probs = cap.pop()
    assert torch.equal(ours, plain)                      # same dropout draws, same output: training unchanged
    for m in probs:
        rows = m.sum(-1)
        assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
        real = mask[:, None, None, :].expand_as(m).bool()
        assert (m[real] > 0).all() and (m[~real] == 0).all()   # every real key keeps its probability


def test_captured_scores_are_the_logits_of_the_captured_probabilities():
    """scores=True records Q K^T / sqrt(d) before the mask: softmax over the real keys gives the probabilities."""
    from distill_core.capture import SCORES_SINK
    from distill_core.models import set_attention_backend
    model = tiny_bert()
    set_attention_backend(model, eager=True)
    ids = torch.tensor([[2, 5, 7, 9, 3], [2, 6, 3, 0, 0]])
    mask = (ids != 0).long()
    plain = model(input_ids=ids, attention_mask=mask).logits
    with AttentionCapture(model, layers=[2, 0], scores=True) as cap:
        hooked = model(input_ids=ids, attention_mask=mask).logits
        probs, scores = cap.pop_stacked(), cap.pop_scores_stacked()
    assert torch.equal(plain, hooked)
    assert scores.shape == probs.shape == (2, 2, 2, 5, 5) and torch.isfinite(scores).all()
    masked = scores.masked_fill(mask[:, None, None, None, :] == 0, float("-inf"))
    assert torch.allclose(torch.softmax(masked, -1), probs, atol=1e-6)
    # each layer's own scores, not one layer's twice
    assert not torch.allclose(scores[:, 0], scores[:, 1])
    # the sinks leave with the hooks
    assert not any(SCORES_SINK in m.__dict__ for m in model.modules())


def test_scores_need_the_probabilities_implementation():
    model = tiny_bert()                                  # transformers' own eager attention hands no scores over
    with pytest.raises(ModelError, match="distill_eager"):
        with AttentionCapture(model, scores=True) as cap:
            model(input_ids=torch.tensor([[2, 5, 3]]))
            cap.pop_scores_stacked()
    with pytest.raises(ModelError, match="scores=True"):
        with AttentionCapture(model) as cap:
            cap.pop_scores_stacked()
