"""Compressing a finished student (distill_core.compress): int8 modules, head masks and importance on tiny models,
and compress_run on copies of runs the real engine wrote."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_core import RunStore
from distill_core import compress as C
from distill_core import head_pruning as HP
from distill_core import latency as L
from distill_core.__main__ import main
from distill_core.errors import ConfigError, ModelError, RunStoreError
from distill_core.mapping import probe_metrics
from distill_core.reopen import reopen


def tiny_bert(layers: int = 2, heads: int = 4, hidden: int = 32, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    conf = BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=2,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification._from_config(conf, attn_implementation="eager").eval()


def tiny_inputs(n: int = 12, t: int = 10, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (n, t), generator=g)
    mask = torch.ones_like(ids)
    mask[n // 2:, t - 3:] = 0                                   # some padding
    return {"input_ids": ids, "attention_mask": mask}


def out_proj(model, layer: int):
    return model.bert.encoder.layer[layer].attention.output.dense


# ---- head masks ------------------------------------------------------------------------------------------------
def test_a_masked_head_contributes_exactly_nothing():
    model, inputs = tiny_bert(), tiny_inputs()
    size = 32 // 4
    seen = []
    mask = np.ones((2, 4), dtype=np.float32)
    mask[1, 2] = 0
    with torch.no_grad():
        clean = model(**inputs).logits
        with HP.apply_head_mask(model, mask):
            handle = out_proj(model, 1).register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
            masked = model(**inputs).logits
            # the head's own weights no longer matter: change its value projection and nothing moves
            value = model.bert.encoder.layer[1].attention.self.value
            saved = value.weight[2 * size:3 * size].clone()
            value.weight[2 * size:3 * size] = torch.randn_like(saved) * 5
            changed = model(**inputs).logits
            handle.remove()
        unmasked_changed = model(**inputs).logits
        value.weight[2 * size:3 * size] = saved
        after = model(**inputs).logits
    context = seen[0]                                                        # (B, T, heads * size)
    assert torch.count_nonzero(context[..., 2 * size:3 * size]) == 0
    assert torch.count_nonzero(context[..., :2 * size]) > 0
    assert torch.equal(masked, changed)
    assert not torch.allclose(masked, clean)
    assert not torch.allclose(unmasked_changed, masked)            # without the mask the head matters
    assert torch.equal(after, clean)                               # the hooks are gone after the block


def test_zeroed_heads_match_the_mask_and_a_mask_of_ones_changes_nothing():
    model, inputs = tiny_bert(), tiny_inputs()
    mask = np.ones((2, 4), dtype=np.float32)
    mask[0, [0, 3]] = 0
    mask[1, 1] = 0
    with torch.no_grad():
        clean = model(**inputs).logits
        with HP.apply_head_mask(model, np.ones((2, 4))):
            assert torch.equal(model(**inputs).logits, clean)
        with HP.apply_head_mask(model, mask):
            masked = model(**inputs).logits
        zeroed = HP.zero_pruned_heads(model, mask)(**inputs).logits
    torch.testing.assert_close(zeroed, masked, rtol=0, atol=1e-6)
    assert torch.equal(model(**inputs).logits.detach(), clean)      # the original keeps its weights


def test_head_mask_refuses_a_wrong_shape_and_a_model_without_heads():
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        HP.apply_head_mask(model, np.ones((4, 2)))
    from distill_core.modality.vision.models import build_cnn
    with pytest.raises(ModelError, match="no attention heads"):
        HP.apply_head_mask(build_cnn(1, 3, [4, 8], 1), np.ones((1, 1)))
    model.bert.encoder.layer[0].attention.output.dense = torch.nn.Identity()    # an architecture it cannot read
    with pytest.raises(ModelError, match="output projection"):
        HP.apply_head_mask(model, np.ones((2, 4)))


def test_head_importance_finds_the_decisive_head():
    """Only head 2 of layer 1 reaches the output of its layer (the others' columns of the output projection are
    zero): its importance is the whole layer's, the others' exactly zero, and pruning keeps it to the last."""
    model, inputs = tiny_bert(), tiny_inputs(24)
    size = 32 // 4
    with torch.no_grad():
        w = out_proj(model, 1).weight
        for head in (0, 1, 3):
            w[:, head * size:(head + 1) * size] = 0
        w[:, 2 * size:3 * size] *= 50                       # and head 2 carries weight
        labels = model(**inputs).logits.argmin(-1)        # a loss with a gradient: the model's least likely class
    batches = [({k: v[i:i + 8] for k, v in inputs.items()}, labels[i:i + 8]) for i in range(0, 24, 8)]
    params = {n: p.clone() for n, p in model.named_parameters()}
    raw = HP.head_importance(model, batches, normalize=False)
    assert raw.shape == (2, 4)
    assert raw[1, 2] > 0 and (raw[1, [0, 1, 3]] == 0).all()
    assert (raw[0] > 0).all()
    imp = HP.head_importance(model, batches)
    np.testing.assert_allclose(np.linalg.norm(imp, axis=1), 1.0, rtol=1e-6)   # each layer divided by its L2 norm
    assert imp[1, 2] == pytest.approx(1.0)
    assert all(torch.equal(p, params[n]) and p.requires_grad for n, p in model.named_parameters())
    for fraction in (0.25, 0.5, 0.75):
        mask, removed, _ = HP.prune_mask(imp, fraction)
        assert mask[1, 2] == 1 and removed == HP.heads_to_remove(fraction, 2, 4) == int(mask.size - mask.sum())
    # masking the decisive head changes the answers; masking the three silent ones changes nothing
    with torch.no_grad():
        clean = model(**inputs).logits
        silent = np.ones((2, 4))
        silent[1, [0, 1, 3]] = 0
        with HP.apply_head_mask(model, silent):
            torch.testing.assert_close(model(**inputs).logits, clean, rtol=0, atol=1e-6)
        decisive = np.ones((2, 4))
        decisive[1, 2] = 0
        with HP.apply_head_mask(model, decisive):
            assert (model(**inputs).logits - clean).abs().max() > 0.1 * clean.abs().max()


def per_example_importance(model, inputs: dict, labels: torch.Tensor) -> np.ndarray:
    """Brute force: each example alone in a batch of one, |dL/dmask| taken for it, averaged over the examples."""
    grads = []
    for i in range(len(labels)):
        mask = torch.ones((2, 4), requires_grad=True)
        with HP.apply_head_mask(model, mask):
            logits = model(**{k: v[i:i + 1] for k, v in inputs.items()}).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[i:i + 1])
        grads.append(torch.autograd.grad(loss, mask)[0].abs().double().numpy())
    return np.mean(grads, axis=0)


def batch_mean_importance(model, batches) -> np.ndarray:
    """The formula this replaces: |dL/dmask| of each batch's mean loss, summed over batches (signs cancel)."""
    total = np.zeros((2, 4))
    for inputs, labels in batches:
        mask = torch.ones((2, 4), requires_grad=True)
        with HP.apply_head_mask(model, mask):
            loss = torch.nn.functional.cross_entropy(model(**inputs).logits, labels)
        total += torch.autograd.grad(loss, mask)[0].abs().double().numpy()
    return total


def test_head_importance_takes_the_absolute_gradient_per_example():
    """Michel et al.'s E_x |dL(x)/dmask|: one backward pass per batch gives what a loop over single examples gives,
    over batches of uneven sizes; |dL/dmask| of the batch's mean loss does not."""
    model, inputs = tiny_bert(), tiny_inputs(11)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0])
    batches = [({k: v[i:j] for k, v in inputs.items()}, labels[i:j]) for i, j in ((0, 5), (5, 10), (10, 11))]
    brute = per_example_importance(model, inputs, labels)
    raw = HP.head_importance(model, batches, normalize=False)
    np.testing.assert_allclose(raw, brute, rtol=1e-4, atol=1e-9)
    norm = brute / np.linalg.norm(brute, axis=1, keepdims=True)
    np.testing.assert_allclose(HP.head_importance(model, batches), norm, rtol=1e-4)
    old = batch_mean_importance(model, batches)
    old = old / np.linalg.norm(old, axis=1, keepdims=True)
    assert np.abs(old - norm).max() > 0.05                      # and it ranks the heads differently
    assert np.argsort(old.ravel()).tolist() != np.argsort(norm.ravel()).tolist()


def test_opposite_pulls_on_a_head_do_not_cancel():
    """The same text twice with opposite labels: every head's two gradients have opposite signs (-p1 g and p0 g,
    g the gradient of the logit difference), so the batch mean's gradient is (p0 - p1) / 2 g, near zero for an
    untrained model, while the mean of the absolute values is |g| / 2."""
    model, inputs = tiny_bert(), tiny_inputs(1)
    pair = {k: v.repeat(2, 1) for k, v in inputs.items()}
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        p0, p1 = torch.softmax(model(**inputs).logits[0], -1).tolist()
    raw = HP.head_importance(model, [(pair, labels)], normalize=False)
    old = batch_mean_importance(model, [(pair, labels)])
    np.testing.assert_allclose(raw, per_example_importance(model, pair, labels), rtol=1e-4, atol=1e-9)
    assert (raw > 0).all() and abs(p0 - p1) < 0.05
    np.testing.assert_allclose(old, abs(p0 - p1) * raw, rtol=1e-3, atol=1e-12)     # nearly all cancelled


def test_a_per_example_mask_gates_each_example_alone():
    model, inputs = tiny_bert(), tiny_inputs(3)
    mask = np.ones((2, 3, 4), dtype=np.float32)
    mask[1, 2, 1] = 0                                           # head 1 of layer 1, for the third example only
    one = np.ones((2, 4), dtype=np.float32)
    one[1, 1] = 0
    with torch.no_grad():
        clean = model(**inputs).logits
        with HP.apply_head_mask(model, mask):
            each = model(**inputs).logits
        with HP.apply_head_mask(model, one):
            masked = model(**inputs).logits
        with HP.apply_head_mask(model, mask), pytest.raises(ValueError, match="3 rows"):
            model(**{k: v[:2] for k, v in inputs.items()})
    torch.testing.assert_close(each[:2], clean[:2], rtol=0, atol=1e-6)
    torch.testing.assert_close(each[2], masked[2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        HP.apply_head_mask(model, np.ones((2, 3, 5)))


def test_prune_mask_keeps_a_head_in_every_layer_and_masks_are_nested():
    imp = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.05]])
    masks = {f: HP.prune_mask(imp, f) for f in (0.0, 0.2, 0.5, 0.7, 0.9)}
    assert masks[0.0][1] == 0 and masks[0.0][0].all()
    mask, removed, want = masks[0.5]
    assert (removed, want) == (3, 3)
    np.testing.assert_array_equal(mask, [[0, 0, 1], [1, 1, 0]])
    mask, removed, want = masks[0.9]                            # 5 asked for, 4 possible: one head per layer stays
    assert (removed, want) == (4, 5) and (mask.sum(1) == 1).all()
    for a, b in [(0.2, 0.5), (0.5, 0.7), (0.7, 0.9)]:
        assert (masks[b][0] <= masks[a][0]).all()               # a larger fraction removes a superset
    assert HP.heads_to_remove(0.125, 2, 2) == 1                   # halves round up


def random_maps(layers: int, heads: int, lengths, seed: int) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [(lambda x: x / x.sum(-1, keepdims=True))(g.random((layers, heads, t, t)) + 0.05).astype(np.float32)
            for t in lengths]


@pytest.mark.parametrize("rule,teacher_heads,padded", [("direct", 4, True), ("group", 8, True), ("mean", 4, True),
                                                       ("direct", 4, False), ("mean", 4, False)])
def test_a_pruned_models_js_leaves_the_removed_heads_out(rule, teacher_heads, padded):
    """Head 2 of student layer 1 attends wildly unlike the teacher (every row on the last token); once it is
    removed, its map no longer moves the JS, which is the mean over the heads kept."""
    lengths = [5, 7, 4] if padded else [6, 6, 6]
    teacher = random_maps(3, teacher_heads, lengths, 0)
    student = random_maps(2, 4, lengths, 1)
    wild = [m.copy() for m in student]
    for m in wild:
        m[1, 2] = 0
        m[1, 2, :, -1] = 1
    pairs = [(0, 0), (2, 1)]
    mask = np.ones((2, 4))
    mask[1, 2] = 0
    kept, per_head = HP.kept_heads_js(teacher, student, pairs, rule, mask, padded=padded)
    kept_wild, per_head_wild = HP.kept_heads_js(teacher, wild, pairs, rule, mask, padded=padded)
    assert kept_wild == pytest.approx(kept, rel=1e-6)
    np.testing.assert_allclose(per_head_wild, per_head, rtol=1e-6)
    every, _ = HP.kept_heads_js(teacher, student, pairs, rule, padded=padded)
    every_wild, _ = HP.kept_heads_js(teacher, wild, pairs, rule, padded=padded)
    assert every_wild > 1.5 * every                                  # with every head, the wild map counts
    full = np.asarray(probe_metrics(teacher, student, pairs, rule, 4, padded=padded)["js"])
    assert every == pytest.approx(float(full.mean()), rel=1e-6)      # no mask: the session's mean
    if rule == "mean":
        assert per_head.shape == (2, 1) and not np.isnan(per_head).any()
    else:
        assert per_head.shape == (2, 4) and np.isnan(per_head).tolist() == (mask[[0, 1]] == 0).tolist()
        assert kept == pytest.approx(float(np.delete(full.ravel(), 6).mean()), rel=1e-6)


def test_fractions_are_checked():
    assert C.check_fractions([0.5, 0.25, 0.25]) == [0.0, 0.25, 0.5]
    assert C.parse_fractions("0.1, 0.5") == [0.0, 0.1, 0.5]
    for bad in ([1.0], [-0.1], [float("nan")], [True], ["half"]):
        with pytest.raises(ConfigError, match=r"\[0, 1\)"):
            C.check_fractions(bad)
    with pytest.raises(ConfigError, match="e.g. 0,0.25,0.5"):
        C.parse_fractions("0.1;0.5")
    assert [C.version_name(f) for f in (0.1, 0.25, 0.125, 0.5)] == ["pruned_10", "pruned_25", "pruned_12.5",
                                                                    "pruned_50"]


# ---- int8 ------------------------------------------------------------------------------------------------------------
def test_int8_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 20)
    q = C.Int8Linear.from_linear(lin)
    x = torch.randn(3, 7, 48)
    y, yq = lin(x), q(x)
    assert yq.shape == y.shape and q.weight_int8.dtype == torch.int8
    assert (yq - y).abs().max() < 0.02 * y.abs().max()
    assert q(torch.zeros(0, 48)).shape == (0, 20)
    # exact on inputs and weights that int8 represents exactly
    lin2 = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin2.weight.copy_(torch.tensor([[127.0, -64.0, 1.0, 0.0], [2.0, 4.0, -127.0, 8.0]]))
    x2 = torch.tensor([[127.0, 3.0, -127.0, 0.0]])
    torch.testing.assert_close(C.Int8Linear.from_linear(lin2)(x2), lin2(x2), rtol=0, atol=1e-3)


def test_int8_scales_are_per_output_channel_so_small_rows_stay_accurate():
    """Rows 50x apart in size: one scale per row keeps every row's relative error under 2%; a scale shared by the
    whole tensor would round the small rows to a few levels (about 20% error) while the layer as a whole stayed close."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 8)
    sizes = torch.tensor([50.0, 1.0, 25.0, 1.0, 10.0, 2.0, 50.0, 1.0])          # (N,)
    with torch.no_grad():
        lin.weight.mul_(sizes[:, None])
    q = C.Int8Linear.from_linear(lin)
    w = lin.weight.detach()                                                        # (N, K)
    dequant = q.weight_int8.float() * q.weight_scale[:, None]                      # (N, K)
    row_error = (dequant - w).norm(dim=1) / w.norm(dim=1)                          # (N,)
    assert row_error.max() < 0.02, row_error
    # the layer's output, channel by channel (activations quantized too)
    x = torch.randn(256, 64)
    y, yq = lin(x), q(x)                                                           # (M, N)
    channel_error = (yq - y).norm(dim=0) / y.norm(dim=0)                           # (N,)
    assert channel_error.max() < 0.03, channel_error


def test_quantized_model_logits_are_close_and_the_original_is_untouched():
    model, inputs = tiny_bert(hidden=64), tiny_inputs(16)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with torch.no_grad():
        ref = model(**inputs).logits
        for embeddings in (False, True):
            q = C.quantize(model, embeddings=embeddings)
            names = C.quantized_modules(q)
            assert len(names["linear"]) == sum(isinstance(m, torch.nn.Linear) for m in model.modules())
            assert names["embedding"] == (["bert.embeddings.word_embeddings"] if embeddings else [])
            out = q(**inputs).logits
            assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
            assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.85
    assert all(torch.equal(v, before[n]) for n, v in model.state_dict().items())
    assert not any(isinstance(m, (C.Int8Linear, C.Int8Embedding)) for m in model.modules())
    from distill_core.modality.vision.models import build_cnn
    with pytest.raises(ModelError, match="no word embeddings"):
        C.quantize(build_cnn(1, 3, [4, 8], 1), embeddings=True)


def test_a_saved_version_loads_back_identical(tmp_path):
    model, inputs = tiny_bert(), tiny_inputs()
    q = C.quantize(model, embeddings=True)
    size = C.save_compressed(q, tmp_path / "v", {"kind": "quantized", "base_variant": "x"})
    files = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert files == ["compression.json", "config.json", "model.safetensors"]
    assert size == (tmp_path / "v" / "model.safetensors").stat().st_size
    fp32 = C.save_compressed(model, tmp_path / "f", {"kind": "fp32"})
    assert size < 0.45 * fp32
    loaded, info = C.load_compressed(tmp_path / "v")
    assert info["family"] == "text" and info["kind"] == "quantized" and info["base_variant"] == "x"
    assert info["quantized_modules"] == C.quantized_modules(q)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, q(**inputs).logits)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "v" / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("bert.embeddings.word_embeddings.weight_int8").dtype == torch.int8
    # a pruned version reads its sibling's weights and applies its head mask as it loads
    mask = [[1, 0, 1, 1], [0, 1, 1, 1]]
    assert C.save_compressed(model, tmp_path / "p", {"kind": "pruned", "head_mask": mask},
                             weights_from="../f/model.safetensors") == fp32
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["compression.json", "config.json"]
    pruned, info = C.load_compressed(tmp_path / "p")
    with torch.no_grad(), HP.apply_head_mask(model, np.asarray(mask)):
        torch.testing.assert_close(pruned(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-6)
    with pytest.raises(ModelError, match="sibling"):
        C.save_compressed(model, tmp_path / "q", {}, weights_from="../../elsewhere/model.safetensors")
    info["weights"] = "/etc/model.safetensors"
    (tmp_path / "p" / "compression.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="sibling"):
        C.load_compressed(tmp_path / "p")
    (tmp_path / "v" / "compression.json").write_text("{}")
    with pytest.raises(ModelError, match="does not say"):
        C.load_compressed(tmp_path / "v")


# ---- a finished run --------------------------------------------------------------------------------------------------
def copy_run(store: RunStore, run_id: str, tmp_path: Path):
    shutil.copytree(store.root / run_id, tmp_path / "runs" / run_id)
    return RunStore(tmp_path / "runs").open(run_id)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return copy_run(*finished_run, tmp_path)


def test_compress_run_writes_only_new_files_and_measures_every_version(run_copy):
    before = digests(run_copy.path)
    calls = []
    record = C.compress_run(run_copy, fractions=(0.0, 0.25, 0.5), progress=lambda *a: calls.append(a))
    after = digests(run_copy.path)
    assert {k: after[k] for k in before} == before                        # byte-identical
    assert all(k == C.FILE or k.startswith(C.FOLDER + "/") for k in set(after) - set(before))
    assert run_copy.read_json(C.FILE) == json.loads(json.dumps(record))
    assert calls and calls[-1][1] == calls[-1][2]

    summary, probe = run_copy.summary(), run_copy.probe()
    assert record["device"] == "cpu" and record["test_size"] == summary["test_size"]
    assert record["fractions"] == [0.0, 0.25, 0.5] and list(record["variants"]) == ["baseline", "distilled"]
    last = {m["student"]: m for m in run_copy.metrics() if m["epoch"] == summary["epochs_done"]}
    for name, entry in record["variants"].items():
        versions = {v["name"]: v for v in entry["versions"]}
        assert list(versions) == ["fp32", "int8_linear", "int8_linear_embeddings", "pruned_25", "pruned_50"]
        fp32 = versions["fp32"]
        assert fp32["test_accuracy"] == pytest.approx(summary["accuracy"][name], abs=1e-6)
        assert fp32["js"] == pytest.approx(last[name]["js_mean"], abs=1e-5)     # as the session measured it
        assert fp32["size_bytes"] == summary["size_bytes"][name]
        assert versions["int8_linear_embeddings"]["size_bytes"] < 0.5 * fp32["size_bytes"]
        for v in entry["versions"]:
            assert set(v) == {"name", "kind", "fraction", "heads_removed", "size_bytes", "latency_ms",
                              "test_accuracy", "js", "folder"}
            assert v["latency_ms"] > 0 and 0 <= v["test_accuracy"] <= 1 and v["js"] >= 0
            folder = run_copy.path / v["folder"]
            assert v["folder"] == f"compressed/{name}/{v['name']}" and folder.is_dir()
            # a pruned version reads the fp32 weights: no second copy on disk
            assert (folder / "model.safetensors").is_file() == (v["kind"] != "pruned")
        layers, heads = probe["student_layers"], probe["student_heads"]
        assert np.shape(entry["head_importance"]) == (layers, heads)
        curve = entry["pruning_curve"]
        assert [p["fraction"] for p in curve] == [0.0, 0.25, 0.5]
        assert [p["heads_removed"] for p in curve] == [0, 1, 2]
        assert curve[0]["test_accuracy"] == fp32["test_accuracy"]
        assert curve[2]["test_accuracy"] == versions["pruned_50"]["test_accuracy"]
        assert versions["pruned_50"]["heads_removed"] == 2 and versions["pruned_50"]["fraction"] == 0.5
        mask = C.pruned_heads(run_copy, name, "pruned_50")
        assert mask.dtype == bool and mask.shape == (layers, heads) and mask.sum() == 2
        assert mask.tolist() == (np.asarray(curve[2]["head_mask"]) == 0).tolist()
        assert C.pruned_heads(run_copy, name, "fp32") is None and C.pruned_heads(run_copy, name, "nope") is None
        assert any("Michel" in n for n in entry["notes"]) and any("as large as fp32" in n for n in entry["notes"])
        timed = entry["latency_conditions"]          # every version of the variant timed together, interleaved
        assert set(timed["spread"]) == set(versions) and timed["order"] == "interleaved" and timed["threads"] == 1
    assert C.pruned_heads(run_copy, "nope", "pruned_50") is None


def test_measure_again_times_every_version_again_and_changes_nothing_else(run_copy, monkeypatch):
    with pytest.raises(RunStoreError, match="has not been compressed"):
        C.measure_again(run_copy)
    first = C.compress_run(run_copy, fractions=(0.0, 0.5))
    monkeypatch.setattr(L, "now_iso", lambda: "2030-01-01T00:00:00Z")
    again = C.measure_again(run_copy)
    assert run_copy.read_json(C.FILE) == json.loads(json.dumps(again))
    for name, entry in again["variants"].items():
        assert entry["latency_conditions"]["measured"] == "2030-01-01T00:00:00Z"
        assert set(entry["latency_conditions"]["spread"]) == {v["name"] for v in entry["versions"]}
        old = first["variants"][name]
        strip = [{k: v for k, v in x.items() if k != "latency_ms"} for x in entry["versions"]]
        assert strip == [{k: v for k, v in x.items() if k != "latency_ms"} for x in old["versions"]]
        assert {k: v for k, v in entry.items() if k not in ("versions", "latency_conditions")} == {
            k: v for k, v in old.items() if k not in ("versions", "latency_conditions")}
    shutil.rmtree(run_copy.compressed_dir("distilled") / "int8_linear")
    with pytest.raises(RunStoreError, match="int8_linear under compressed/"):
        C.measure_again(run_copy)


def test_compressed_folders_load_back_and_reproduce_the_masked_student(run_copy):
    record = C.compress_run(run_copy, fractions=(0.5,))
    entry = record["variants"]["distilled"]
    student = reopen(run_copy).student("distilled")
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        ref = student(**inputs).logits
        for v in entry["versions"]:
            model, info = C.load_compressed(run_copy.path / v["folder"])
            assert info["base_variant"] == "distilled" and info["version"] == v["name"] and info["kind"] == v["kind"]
            out = model(**inputs).logits
            if v["kind"] == "pruned":
                assert info["head_mask"] == entry["pruning_curve"][1]["head_mask"]
                with HP.apply_head_mask(student, np.asarray(info["head_mask"])):
                    torch.testing.assert_close(out, student(**inputs).logits, rtol=0, atol=1e-5)
            elif v["kind"] == "fp32":
                assert torch.equal(out, ref)
            else:
                assert info["quantized_modules"]["linear"] and (out - ref).abs().max() < 0.1


def test_a_pruned_versions_js_ignores_the_maps_of_its_removed_heads(run_copy):
    """compress.measure under a head mask: scrambling a removed head's queries changes its attention map but nothing
    the pruned model computes, and its JS to the teacher does not move; with the head kept, the JS does move."""
    data = C.RunData(run_copy)
    student = data.run.student("distilled")
    layer = data.pairs[-1][1]                                          # a mapped student layer
    layers, heads, size = HP.heads_shape(student)
    mask = np.ones((layers, heads), dtype=np.float32)
    mask[layer, 0] = 0
    query = next(m for n, m in student.named_modules() if n.endswith(f"layer.{layer}.attention.self.query"))
    before, before_all = C.measure(student, data, mask), C.measure(student, data)
    with torch.no_grad():
        query.weight[:size] = torch.randn_like(query.weight[:size]) * 30
        query.bias[:size] = torch.randn_like(query.bias[:size]) * 30
    after, after_all = C.measure(student, data, mask), C.measure(student, data)
    assert data.head_rule != "mean"
    assert after["test_accuracy"] == before["test_accuracy"]
    assert after["js"] == pytest.approx(before["js"], rel=1e-5)
    assert abs(after_all["js"] - before_all["js"]) > 0.01 * before_all["js"]


def test_compressing_one_variant_keeps_the_others(run_copy):
    first = C.compress_run(run_copy, fractions=(0.0, 0.5))
    again = C.compress_run(run_copy, ["distilled"], fractions=(0.0, 0.5))
    assert again["variants"]["baseline"] == first["variants"]["baseline"]       # the reference was not redone
    assert list(again["variants"]) == ["baseline", "distilled"]
    # other fractions: the reference is compressed again so that the two curves share their points
    third = C.compress_run(run_copy, ["distilled"], fractions=(0.25,))
    assert [p["fraction"] for p in third["variants"]["baseline"]["pruning_curve"]] == [0.0, 0.25]
    assert sorted(p.name for p in (run_copy.path / C.FOLDER / "baseline").iterdir()) == [
        "fp32", "int8_linear", "int8_linear_embeddings", "pruned_25"]               # pruned_50 went with the old


def test_compress_refuses_bad_input_and_writes_nothing(run_copy, capsys):
    with pytest.raises(RunStoreError, match="no variant 'nope'; its variants are baseline, distilled"):
        C.compress_run(run_copy, ["nope"])
    with pytest.raises(ConfigError, match=r"outside \[0, 1\)"):
        C.compress_run(run_copy, fractions=(0.5, 1.0))
    assert main(["compress", run_copy.id, "--runs-dir", str(run_copy.path.parent), "--fractions", "0.5,2"]) == 2
    assert "outside [0, 1)" in capsys.readouterr().err
    assert main(["compress", run_copy.id, "--runs-dir", str(run_copy.path.parent), "--variant", "nope"]) == 2
    assert "its variants are baseline, distilled" in capsys.readouterr().err
    run_copy.update_status(status="failed")
    with pytest.raises(RunStoreError, match="is failed, not finished"):
        C.compress_run(run_copy)
    assert not (run_copy.path / C.FILE).exists() and not (run_copy.path / C.FOLDER).exists()
    assert C.read_compression(run_copy) is None


def test_cli_prints_the_table_and_the_curve(run_copy, capsys):
    code = main(["compress", run_copy.id, "--runs-dir", str(run_copy.path.parent), "--variant", "distilled",
                 "--fractions", "0,0.5", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "distilled" in out and "baseline" in out                  # the reference came along
    for word in ("int8_linear_embeddings", "pruned_50", "size MB", "latency ms", "test acc", "JS", "fraction",
                 "removed", "written:", "mean over the heads each version keeps"):
        assert word in out
    record = C.read_compression(run_copy)
    acc = record["variants"]["distilled"]["versions"][0]["test_accuracy"]
    assert f"{100 * acc:.1f}%" in out


# ---- image runs --------------------------------------------------------------------------------------------------
def test_a_vit_run_is_quantized_and_pruned(vit_image_run, tmp_path):
    run = copy_run(*vit_image_run, tmp_path)
    before = digests(run.path)
    record = C.compress_run(run, ["kd"], fractions=(0.0, 0.5))
    assert {k: v for k, v in digests(run.path).items() if k in before} == before
    assert list(record["variants"]) == ["baseline", "kd"]               # with the reference
    entry = record["variants"]["kd"]
    assert [v["name"] for v in entry["versions"]] == ["fp32", "int8_linear", "pruned_50"]
    assert entry["family"] == "vit" and np.shape(entry["head_importance"]) == (1, 2)
    assert entry["versions"][0]["test_accuracy"] == pytest.approx(run.summary()["accuracy"]["kd"], abs=1e-6)
    assert all(v["js"] is not None for v in entry["versions"])
    assert C.pruned_heads(run, "kd", "pruned_50").sum() == 1
    model, info = C.load_compressed(run.path / entry["versions"][1]["folder"])
    assert info["family"] == "vit" and "classifier" in info["quantized_modules"]["linear"]
    assert any("patch embedding" in n for n in entry["notes"])


def test_a_cnn_run_is_quantized_and_not_pruned(cnn_image_run, tmp_path):
    run = copy_run(*cnn_image_run, tmp_path)
    record = C.compress_run(run, ["kd"])
    entry = record["variants"]["kd"]
    assert [v["name"] for v in entry["versions"]] == ["fp32", "int8_linear"]
    assert entry["head_importance"] is None and entry["pruning_curve"] is None
    assert any("not applicable" in n for n in entry["notes"])
    model, info = C.load_compressed(run.path / entry["versions"][1]["folder"])
    assert info["family"] == "cnn" and info["quantized_modules"] == {"linear": ["classifier"], "embedding": []}
    assert C.pruned_heads(run, "kd", "int8_linear") is None
