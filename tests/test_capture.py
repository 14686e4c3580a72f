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
