"""What the pages read back agrees with what the engine recorded."""
import numpy as np
import pytest

from distill_core.analysis import (attention_for_text, compare_pair, divergence_table, load_run_models,
                                   teacher_heads_for)


def test_recorded_metrics_match_stored_maps(finished_run):
    store, run_id = finished_run
    run = store.open(run_id)
    probe = run.probe()
    teacher = run.read_attention("teacher")
    last = max(run.attention_epochs("distilled"))
    student = run.read_attention(f"distilled_e{last}")
    record = [m for m in run.metrics() if m["student"] == "distilled" and m["epoch"] == last][0]
    for k, (t, s) in enumerate(probe["pairs"]):
        weighted, rows = 0.0, 0
        for tm, sm in zip(teacher, student):
            per_head = compare_pair(tm[t], sm[s], probe["head_rule"], probe["student_heads"])["js"]
            n = tm.shape[-1]
            weighted, rows = weighted + per_head * n, rows + n
        assert np.allclose(weighted / rows, record["attention"]["js"][k], atol=2e-3)


def test_live_text_reproduces_the_final_probe_maps(finished_run):
    store, run_id = finished_run
    run = store.open(run_id)
    rm = load_run_models(run)
    assert set(rm.models) == {"teacher", "distilled", "baseline"}
    probe = run.probe()
    tokens, maps, probs = attention_for_text(rm, probe["texts"][0])
    assert tokens == probe["tokens"][0]
    last = max(run.attention_epochs("distilled"))
    assert np.allclose(maps["distilled"], run.read_attention(f"distilled_e{last}")[0], atol=2e-3)
    assert np.allclose(maps["teacher"], run.read_attention("teacher")[0], atol=2e-3)
    assert np.isclose(probs["teacher"].sum(), 1.0)
    with pytest.raises(ValueError, match="type a sentence"):
        attention_for_text(rm, "   ")


def test_teacher_heads_for_each_rule():
    assert teacher_heads_for(1, "group", 12, 4) == [3, 4, 5]
    assert teacher_heads_for(2, "direct", 4, 4) == [2]
    assert teacher_heads_for(0, "mean", 3, 2) == [0, 1, 2]


def test_divergence_table_rows(finished_run):
    store, run_id = finished_run
    run = store.open(run_id)
    rows = divergence_table(run, "distilled")
    assert {(r["epoch"], r["teacher_layer"], r["student_layer"]) for r in rows} == {
        (e, t, s) for e in (0, 1, 2) for t, s in [(1, 0), (3, 1)]}
    record = [m for m in run.metrics() if m["student"] == "distilled" and m["epoch"] == 2][0]
    last = [r for r in rows if r["epoch"] == 2]
    assert [r["js"] for r in last] == pytest.approx([float(np.mean(v)) for v in record["attention"]["js"]])


def test_every_variant_of_a_four_variant_run_loads_and_matches_its_maps(four_variant_run):
    store, run_id = four_variant_run
    run = store.open(run_id)
    rm = load_run_models(run)
    assert list(rm.models) == ["teacher", "baseline", "kd", "kd_att_kl", "kd_att_mse"]
    probe = run.probe()
    tokens, maps, _ = attention_for_text(rm, probe["texts"][1])
    for v in ("baseline", "kd", "kd_att_kl", "kd_att_mse"):
        assert np.allclose(maps[v], run.read_attention(f"{v}_e2")[1], atol=2e-3)
        assert {r["epoch"] for r in divergence_table(run, v)} == {0, 1, 2}
