"""A layer map suggested from recorded attention: the optimal assignment on synthetic maps whose answer is known,
and on a run the real engine wrote (`finished_run`), and `layer_map: suggested` resolved from a run store."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from distill_core import RunStore, mapping
from distill_core.analysis import SUGGEST_NONE, resolve_suggested, suggest_for_run
from distill_core.errors import ConfigError, RunStoreError


def softmax_maps(rng, layers: int, heads: int, t: int) -> np.ndarray:
    """Random attention maps (layers, heads, t, t): every row a probability distribution."""
    logits = rng.normal(scale=2.0, size=(layers, heads, t, t))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def peaked_heads(heads: int, t: int) -> np.ndarray:
    """One layer (heads, t, t) whose head h attends mostly to the key h steps after the query: distinct heads."""
    out = np.full((heads, t, t), 0.02 / t, dtype=np.float32)
    for h in range(heads):
        for q in range(t):
            out[h, q, (q + h) % t] += 0.98
    return out


LENGTHS = (5, 7, 9)            # probe examples of different lengths, as a run stores them (no padding)


@pytest.mark.parametrize("student_heads,rule", [(2, "group"), (4, "direct"), (2, "mean")])
def test_suggest_map_finds_the_teacher_layers_a_student_copies(student_heads, rule):
    rng = np.random.default_rng(0)
    perm = [4, 0, 2]           # neither uniform (1, 3, 5) nor in rising order
    teacher = [softmax_maps(rng, 6, 4, t) for t in LENGTHS]                        # (Lt=6, Ht=4, t, t)
    # student layer i is teacher layer perm[i], its heads averaged in consecutive groups as the head rule group does
    student = [m[perm].reshape(3, student_heads, 4 // student_heads, t, t).mean(2) for m, t in zip(teacher, LENGTHS)]
    out = mapping.suggest_map(teacher, student, rule, student_heads)
    assert out["layers"] == perm
    assert out["cost"] < 1e-6 < 0.01 < out["uniform_cost"]
    assert out["uniform"] == [1, 3, 5]
    costs = np.asarray(out["costs"])
    assert costs.shape == (3, 6)
    assert out["cost"] == pytest.approx(np.mean(costs[[0, 1, 2], perm]))
    assert out["head_rule"] == rule
    # every teacher head is matched once within each pair, 4 / Hs to a student head
    for groups in out["heads"]:
        assert len(groups) == student_heads and sorted(sum(groups, [])) == [0, 1, 2, 3]


def test_layer_costs_average_js_as_the_recorded_divergences():
    """The cost of a pair is the JS of attention_metrics over every real row of every example, as a run records."""
    import torch
    from distill_core.metrics import attention_metrics
    rng = np.random.default_rng(1)
    teacher = [softmax_maps(rng, 4, 4, t) for t in LENGTHS]
    student = [softmax_maps(rng, 2, 2, t) for t in LENGTHS]
    costs = mapping.layer_costs(teacher, student, "group", 2)
    t_max = max(LENGTHS)

    def pad(maps, layer):                                   # -> (B, 1, H, T, T)
        out = torch.zeros((len(maps), 1, maps[0].shape[1], t_max, t_max))
        for i, m in enumerate(maps):
            out[i, 0, :, :m.shape[-1], :m.shape[-1]] = torch.from_numpy(m[layer])
        return out
    mask = (torch.arange(t_max)[None] < torch.tensor(LENGTHS)[:, None]).float()
    for s in range(2):
        for t in range(4):
            p = mapping.adapt_teacher(pad(teacher, t), "group", 2)
            q = mapping.adapt_student(pad(student, s), "group")
            js = attention_metrics(p, q, mask, names=("js",))["js"]
            assert costs[s, t] == pytest.approx(float(js.mean()), rel=1e-5)


def test_head_assignment_recovers_a_known_grouping():
    t = 8
    teacher = peaked_heads(8, t)
    groups = [[1, 5], [0, 6], [3, 7], [2, 4]]              # student head h averages teacher heads groups[h]
    student = np.stack([teacher[g].mean(0) for g in groups])
    costs = mapping.head_costs([teacher, teacher[:, :5, :5]], [student, student[:, :5, :5]])
    assert costs.shape == (4, 8)
    assert mapping.head_groups(costs) == groups
    # equal head counts: one teacher head each, in any order
    order = [2, 0, 3, 1]
    assert mapping.head_groups(mapping.head_costs([teacher[:4]], [teacher[:4][order]])) == [[h] for h in order]
    # counts that do not divide: one group of every teacher head, as head rule mean compares them
    assert mapping.head_groups(np.zeros((3, 8))) == [list(range(8))] * 3


def test_suggest_map_refuses_what_it_cannot_map():
    rng = np.random.default_rng(2)
    teacher = [softmax_maps(rng, 2, 4, 5)]
    with pytest.raises(ConfigError, match="at most 2 student layers"):
        mapping.suggest_map(teacher, [softmax_maps(rng, 3, 2, 5)], "group", 2)
    with pytest.raises(ValueError, match="tokens"):
        mapping.layer_costs(teacher, [softmax_maps(rng, 2, 2, 6)], "group", 2)
    with pytest.raises(ValueError, match="same probe examples"):
        mapping.layer_costs(teacher, [], "group", 2)


def test_layer_map_suggested_must_be_resolved_first():
    with pytest.raises(ConfigError, match="resolved from a finished run first"):
        mapping.layer_map("suggested", 6, 3)


# ---- on a run the engine wrote --------------------------------------------------------------------------
def test_suggest_for_run_reads_the_baseline_at_its_last_epoch(finished_run):
    store, run_id = finished_run
    run = store.open(run_id)
    probe = run.probe()
    out = suggest_for_run(run)
    assert (out["run_id"], out["variant"], out["epoch"]) == (run_id, "baseline", 2)
    layers = out["layers"]
    assert len(layers) == probe["student_layers"] and len(set(layers)) == len(layers)
    assert all(0 <= t < probe["teacher_layers"] for t in layers)
    assert out["used"] == [t for t, _ in probe["pairs"]]
    assert np.shape(out["costs"]) == (probe["student_layers"], probe["teacher_layers"])
    assert out["cost"] <= out["used_cost"] + 1e-12           # the assignment is at least as close as the used map
    # the used map's cost is the divergence the run recorded for its baseline (the maps are stored as float16)
    recorded = next(r for r in run.metrics() if r["student"] == "baseline" and r["epoch"] == 2)
    assert out["used_cost"] == pytest.approx(recorded["js_mean"], rel=0.02, abs=1e-4)
    assert suggest_for_run(run, "distilled")["variant"] == "distilled"
    with pytest.raises(RunStoreError, match="no variant 'nope'"):
        suggest_for_run(run, "nope")


def copy_run(store: RunStore, run_id: str, root, new_id: str, **status) -> RunStore:
    """A copy of a run's folder (without its weights) in the store at `root`, with status fields replaced."""
    target = RunStore(root)
    target.root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(store.open(run_id).path, target.root / new_id, ignore=shutil.ignore_patterns("models"))
    if status:
        target.open(new_id).update_status(**status)
    return target


def test_suggest_for_run_needs_a_trained_epoch(finished_run, tmp_path):
    store, run_id = finished_run
    copy = copy_run(store, run_id, tmp_path / "runs", "untrained")
    for p in (copy.root / "untrained" / "attention").glob("*_e[1-9]*.npz"):
        p.unlink()
    assert suggest_for_run(copy.open("untrained")) is None


def resolve_args(run) -> dict:
    cfg, probe = run.config(), run.probe()
    return dict(teacher_source=cfg["teacher"]["source"], teacher_layers=probe["teacher_layers"],
                student_layers=probe["student_layers"], student_heads=probe["student_heads"],
                data_source=cfg["data"]["source"])


def test_resolve_suggested_finds_the_newest_matching_finished_run(finished_run, tmp_path):
    store, run_id = finished_run
    run = store.open(run_id)
    args = resolve_args(run)
    layers, found = resolve_suggested(store, **args)
    assert (layers, found) == (suggest_for_run(run)["layers"], run_id)

    root = tmp_path / "runs"
    copy_run(store, run_id, root, "older", ended="2020-01-01T00:00:00Z")
    copy_run(store, run_id, root, "newer", ended="2021-01-01T00:00:00Z")
    copy_run(store, run_id, root, "newest-failed", status="failed", ended="2022-01-01T00:00:00Z")
    assert resolve_suggested(RunStore(root), **args) == (layers, "newer")
    # a named run is used as it is, even when it is not the newest
    assert resolve_suggested(RunStore(root), **args, run_id="older") == (layers, "older")


def test_resolve_suggested_says_what_to_do_without_a_match(finished_run, tmp_path):
    store, run_id = finished_run
    args = resolve_args(store.open(run_id))
    with pytest.raises(ConfigError) as empty:
        resolve_suggested(RunStore(tmp_path / "empty"), **args)
    assert str(empty.value) == SUGGEST_NONE
    assert "layer_map: suggested needs a finished run with the same teacher, data and student shape" in SUGGEST_NONE
    assert "or give the layers as a list like 1,3,5" in SUGGEST_NONE
    for change in ({"student_heads": args["student_heads"] * 2}, {"student_layers": 1},
                   {"data_source": "other.csv"}, {"teacher_source": "default"}):
        with pytest.raises(ConfigError, match="needs a finished run with the same teacher"):
            resolve_suggested(store, **{**args, **change})
    with pytest.raises(ConfigError, match="differs from this session's"):
        resolve_suggested(store, **{**args, "student_heads": 1}, run_id=run_id)
    with pytest.raises(ConfigError, match="cannot be read"):
        resolve_suggested(store, **args, run_id="no-such-run")
    copy_run(store, run_id, tmp_path / "runs", "failed", status="failed")
    with pytest.raises(ConfigError, match="which is failed, not finished"):
        resolve_suggested(RunStore(tmp_path / "runs"), **args, run_id="failed")
