"""Sweeps across seeds: parsing seeds, the store, a real two-seed sweep through the command line, and the summary
of hand-made runs checked against counts made by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from distill_core import RunStore, SessionConfig
from app.__main__ import main   # the engine's commands, and sweep.html drawn with the app's figure
from distill_core.errors import ConfigError, RunStoreError
from distill_core.store import now_iso
from distill_core.sweep import (SweepStore, format_summary, parse_seeds, run_sweep, start_seeds, start_sweep,
                                summarize_sweep, sweep_status)

from conftest import tiny_config_dict

VARIANTS = ["baseline", "distilled"]


# ---- hand-made runs -------------------------------------------------------------------------------------
def make_run(store: RunStore, run_id: str, seed: int, labels, predictions: dict, js: dict | None = None,
             status: str = "done", warnings=()) -> str:
    """A run folder as the engine writes it, with the given test answers (accuracies follow from them)."""
    run = store.create({"name": f"hand-seed{seed}", "train": {"seed": seed}}, run_id=run_id)
    y = np.asarray(labels)
    acc = {m: float((np.asarray(p) == y).mean()) for m, p in predictions.items()}
    js = js or {v: [0.2, 0.1] for v in VARIANTS}
    run.write_json("summary.json", {"status": status, "variants": VARIANTS, "reference": "baseline",
                                    "accuracy": acc if status == "done" else {m: None for m in acc},
                                    "divergence": {"metric": "js", "epochs": [0, 1], **js},
                                    "test_size": len(y), "warnings": list(warnings)})
    if status == "done":
        run.write_json("predictions.json", {"split": "test", "labels": list(labels),
                                            "predictions": {m: list(p) for m, p in predictions.items()}})
    run.update_status(status=status, ended=now_iso(), error="boom" if status == "failed" else None)
    return run_id


LABELS = [0, 1, 0, 1, 0, 1, 0, 1]
SEED_ANSWERS = {   # per seed: teacher, baseline, distilled test answers on LABELS
    0: {"teacher": [0, 1, 0, 1, 0, 1, 0, 0], "baseline": [0, 1, 1, 0, 0, 1, 1, 1],
        "distilled": [0, 1, 0, 1, 1, 1, 0, 1]},
    1: {"teacher": [0, 1, 0, 1, 0, 1, 0, 1], "baseline": [1, 1, 0, 0, 0, 1, 1, 0],
        "distilled": [0, 1, 0, 1, 0, 0, 0, 1]},
}
SEED_JS = {0: {"baseline": [0.3, 0.2], "distilled": [0.2, 0.1]}, 1: {"baseline": [0.3, 0.25], "distilled": [0.2, 0.15]}}


def hand_made_sweep(root, failed_seed: int | None = None, name: str = "hand") -> tuple[RunStore, SweepStore, str]:
    """A sweep of seeds 0 and 1 (and a failed seed when asked) over hand-made runs in `root`."""
    store, sweeps = RunStore(root), SweepStore(root)
    seeds = [0, 1] + ([failed_seed] if failed_seed is not None else [])
    record = sweeps.create({"name": name}, seeds, name)
    for seed in (0, 1):
        make_run(store, f"run-seed{seed}", seed, LABELS, SEED_ANSWERS[seed], SEED_JS[seed],
                 warnings=[{"model": "baseline", "kind": "below_majority", "message": "baseline is weak"}] if seed
                 else [])
        sweeps.record_run(record["id"], seed, f"run-seed{seed}")
    if failed_seed is not None:
        make_run(store, f"run-seed{failed_seed}", failed_seed, LABELS, SEED_ANSWERS[0], status="failed")
        sweeps.record_run(record["id"], failed_seed, f"run-seed{failed_seed}")
    return store, sweeps, record["id"]


# ---- seeds ----------------------------------------------------------------------------------------------
def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds(" 3 ") == [3]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad, message in [("", "seeds must look like 0-4 or 0,1,2"), ("a-b", "seeds must look like"),
                         ("-1", "seeds must look like"), ("1,,2", "seeds must look like"),
                         ("4-1", "runs backwards"), ("0-20", "at most 20"), ("0-9,10-19,20", "at most 20"),
                         ("1,2,1", "seed 1 is named twice"), ("0-2,2", "named twice")]:
        with pytest.raises(ConfigError, match=message):
            parse_seeds(bad)


def test_sweep_status_from_its_runs():
    assert sweep_status({0: "queued", 1: "pending"}) == "queued"
    assert sweep_status({0: "pending", 1: "pending"}) == "queued"
    assert sweep_status({0: "done", 1: "pending"}) == "partial"
    assert sweep_status({0: "done", 1: "queued"}) == "running"
    assert sweep_status({0: "running", 1: "queued"}) == "running"
    assert sweep_status({0: "done", 1: "done"}) == "done"
    assert sweep_status({0: "done", 1: "cancelled"}) == "partial"
    assert sweep_status({0: "done", 1: "missing"}) == "partial"
    assert sweep_status({0: "failed", 1: "interrupted"}) == "failed"


# ---- the store ------------------------------------------------------------------------------------------
def test_store_keeps_sweeps_apart_from_runs(tmp_path):
    store, sweeps, sweep_id = hand_made_sweep(tmp_path)
    assert (tmp_path / "_sweeps" / sweep_id / "sweep.json").is_file()
    assert sorted(r.run_id for r in store.list()) == ["run-seed0", "run-seed1"]      # _sweeps is no run
    with pytest.raises(RunStoreError):
        store.open("_sweeps")
    record = sweeps.open(sweep_id)
    assert record["seeds"] == [0, 1] and record["runs"] == {"0": "run-seed0", "1": "run-seed1"}
    listed = sweeps.list()
    assert [(s["id"], s["status"], s["seeds"]) for s in listed] == [(sweep_id, "done", [0, 1])]
    with pytest.raises(RunStoreError, match="not a valid sweep id"):
        sweeps.open("../etc")
    sweeps.delete(sweep_id)
    assert sweeps.list() == [] and store.exists("run-seed0")              # the runs stay


def test_damaged_record_is_listed_as_damaged(tmp_path):
    sweeps = SweepStore(tmp_path)
    (tmp_path / "_sweeps" / "broken").mkdir(parents=True)
    (tmp_path / "_sweeps" / "broken" / "sweep.json").write_text("{not json")
    assert [(s["id"], s["status"]) for s in sweeps.list()] == [("broken", "damaged")]


# ---- the summary, against counts made by hand -----------------------------------------------------------
def test_summary_of_hand_made_runs(tmp_path):
    store, sweeps, sweep_id = hand_made_sweep(tmp_path)
    s = summarize_sweep(store, sweeps.open(sweep_id))
    assert s["status"] == "done" and s["seeds_done"] == [0, 1] and s["problems"] == []
    assert s["variants"] == VARIANTS and s["reference"] == "baseline" and s["test_size"] == 8
    assert s["teacher"]["accuracy"] == [7 / 8, 1.0]
    assert s["variants_stats"]["baseline"]["accuracy"] == [5 / 8, 4 / 8]
    assert s["variants_stats"]["distilled"]["accuracy"] == [7 / 8, 7 / 8]
    assert s["variants_stats"]["distilled"]["js"] == [0.1, 0.15]
    assert s["variants_stats"]["distilled"]["js_mean"] == pytest.approx(0.125)
    p = s["paired"]["distilled"]
    # by hand: seed 0, distilled alone right on examples 2, 3, 6 and baseline alone on 4;
    # seed 1, distilled alone right on 0, 3, 6, 7 and baseline alone on 5
    assert (p["variant_only"], p["ref_only"]) == (7, 2)
    assert p["n"] == 8 and p["answers"] == 16 and p["runs"] == 2        # 8 test examples, each answered twice
    assert p["per_seed_diff"] == pytest.approx([2 / 8, 3 / 8])
    assert p["diff_mean"] == pytest.approx(5 / 16) and p["diff_lo"] < p["diff_mean"] < p["diff_hi"]
    assert p["js_below_reference_every_seed"] is True
    assert p["gap_closed"] == pytest.approx((14 / 16 - 9 / 16) / (15 / 16 - 9 / 16))
    assert [w["message"] for w in s["warnings"]] == ["seed 1: baseline is weak"]
    json.dumps(s, allow_nan=False)                         # sweep.json can hold it
    text = format_summary(s)
    assert "2 of 2 seeds done" in text and "distilled vs baseline" in text and "pooled per test example (n = 8, each answered by 2 seeds)" in text


def test_different_test_labels_are_not_pooled(tmp_path):
    store, sweeps, sweep_id = hand_made_sweep(tmp_path)
    run = store.open("run-seed1")
    pred = run.predictions()
    run.write_json("predictions.json", {**pred, "labels": [1 - y for y in pred["labels"]]})
    s = summarize_sweep(store, sweeps.open(sweep_id))
    assert any("different examples" in p for p in s["problems"])
    assert "p" not in s["paired"]["distilled"] and s["paired"]["distilled"]["diff_mean"] is not None


def test_a_failed_seed_makes_the_sweep_partial(tmp_path):
    store, sweeps, sweep_id = hand_made_sweep(tmp_path, failed_seed=2)
    s = summarize_sweep(store, sweeps.open(sweep_id))
    assert s["status"] == "partial" and s["seeds_done"] == [0, 1] and s["seed_status"]["2"] == "failed"
    assert s["paired"]["distilled"]["answers"] == 16           # only finished runs count
    assert sweeps.list()[0]["status"] == "partial"


def test_a_sweep_with_no_finished_seed(tmp_path):
    store, sweeps = RunStore(tmp_path), SweepStore(tmp_path)
    record = sweeps.create({}, [0, 1])
    assert summarize_sweep(store, record)["status"] == "queued"
    sweeps.record_run(record["id"], 0, make_run(store, "r0", 0, LABELS, SEED_ANSWERS[0], status="failed"))
    sweeps.record_run(record["id"], 1, make_run(store, "r1", 1, LABELS, SEED_ANSWERS[1], status="cancelled"))
    s = summarize_sweep(store, sweeps.open(record["id"]))
    assert s["status"] == "failed" and s["seeds_done"] == [] and s["paired"] == {}
    assert "0 of 2 seeds done" in format_summary(s)


# ---- running --------------------------------------------------------------------------------------------
def test_two_seed_sweep_through_the_command_line(tmp_path, tiny_teacher, tiny_csv, capsys):
    cfg = tiny_config_dict(tiny_teacher, tiny_csv)
    cfg["train"]["epochs"] = 1
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    runs = tmp_path / "runs"
    code = main(["sweep", "--config", str(p), "--seeds", "0-1", "--name", "cli sweep", "--runs-dir", str(runs),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    sweeps, store = SweepStore(runs), RunStore(runs)
    [listed] = sweeps.list()
    record = sweeps.open(listed["id"])
    assert record["seeds"] == [0, 1] and set(record["runs"]) == {"0", "1"} and record["name"] == "cli sweep"
    summary = record["summary"]
    assert summary["status"] == "done" and summary["seeds_done"] == [0, 1]
    for k, seed in enumerate((0, 1)):
        run = store.open(record["runs"][str(seed)])
        assert run.config()["train"]["seed"] == seed and f"cli-sweep-seed{seed}" in run.id
        acc = run.summary()["accuracy"]
        assert summary["teacher"]["accuracy"][k] == acc["teacher"]
        for v in summary["variants"]:
            assert summary["variants_stats"][v]["accuracy"][k] == acc[v]
    assert summary["paired"]["distilled"]["n"] == summary["test_size"] == cfg["data"]["test_size"]
    assert summary["paired"]["distilled"]["answers"] == 2 * summary["test_size"]
    html = sweeps.folder(listed["id"]) / "sweep.html"
    assert html.is_file() and html.stat().st_size > 100_000        # plotly.js is inside: it works offline
    assert "seed 0 (1/2)" in out and "distilled vs baseline" in out and listed["id"] in out
    assert main(["sweeps", "--runs-dir", str(runs)]) == 0
    assert listed["id"] in capsys.readouterr().out


def test_a_seed_that_fails_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    from distill_core import run_session
    from distill_core.session import runner
    real = runner.Session.execute

    def execute(self):
        if self.config.train.seed == 1:
            raise RuntimeError("seed 1 breaks")
        return real(self)

    monkeypatch.setattr(runner.Session, "execute", execute)
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1))
    store, sweeps = RunStore(tmp_path), SweepStore(tmp_path)
    def in_this_process(cfg, run):          # the stand-in above lives in this process, not in a child
        try:
            run_session(cfg, store, run=run)
        except RuntimeError:
            pass
        return run.status()

    sweep_id = run_sweep(cfg, [1, 2], store, sweeps, name="with a failure", run_one=in_this_process)
    record = sweeps.open(sweep_id)
    assert set(record["runs"]) == {"1", "2"}
    assert store.open(record["runs"]["1"]).status()["status"] == "failed"
    assert record["summary"]["status"] == "partial" and record["summary"]["seeds_done"] == [2]


def test_cli_exit_code_is_1_when_a_seed_fails(tmp_path, monkeypatch, capsys):
    import distill_core.sweep as sweep_mod

    def fake_run_sweep(cfg, seeds, store, sweeps, name="", progress=False, report=None, against=None):
        _, _, sweep_id = hand_made_sweep(store.root, failed_seed=2)
        sweeps.write_summary(sweep_id, summarize_sweep(store, sweeps.open(sweep_id)))
        return sweep_id

    monkeypatch.setattr(sweep_mod, "run_sweep", fake_run_sweep)
    assert main(["sweep", "--seeds", "0-2", "--runs-dir", str(tmp_path), "--quiet"]) == 1
    assert "partial" in capsys.readouterr().out


def test_cli_refuses_bad_seeds(tmp_path, capsys):
    assert main(["sweep", "--seeds", "0-x", "--runs-dir", str(tmp_path)]) == 2
    assert "seeds must look like 0-4 or 0,1,2" in capsys.readouterr().err
    assert main(["sweep", "--seeds", "0-1", "--seed", "3", "--runs-dir", str(tmp_path)]) == 2
    assert "use --seeds" in capsys.readouterr().err
    assert main(["sweeps", "--runs-dir", str(tmp_path)]) == 0
    assert "no sweeps yet" in capsys.readouterr().out


def test_start_sweep_queues_one_session_per_seed(tmp_path):
    store, sweeps = RunStore(tmp_path), SweepStore(tmp_path)
    started = []

    def fake_start(config, run_store):
        started.append(config)
        return run_store.create(config.to_dict(), status="queued").id

    sweep_id = start_sweep(SessionConfig(), [3, 5], store, sweeps, name="app", start=fake_start)
    record = sweeps.open(sweep_id)
    assert [c.train.seed for c in started] == [3, 5] and [c.name for c in started] == ["app-seed3", "app-seed5"]
    assert [store.open(record["runs"][k]).config()["train"]["seed"] for k in ("3", "5")] == [3, 5]
    assert sweeps.list()[0]["status"] == "queued"
    # the Start button's three cases
    assert start_seeds(SessionConfig(), "", store, start=fake_start)[1] is None and started[-1].train.seed == 0
    assert start_seeds(SessionConfig(), "7", store, start=fake_start)[1] is None and started[-1].train.seed == 7
    run_id, sweep_id = start_seeds(SessionConfig(), "1-2", store, start=fake_start)
    assert sweeps.open(sweep_id)["runs"]["1"] == run_id and started[-1].train.seed == 2


def test_against_compares_every_variant_with_the_named_one_and_reads_robustness(tmp_path, capsys):
    store, sweeps, sweep_id = hand_made_sweep(tmp_path)
    for seed, acc in ((0, [0.9, 0.5]), (1, [0.7, 0.3])):
        store.open(f"run-seed{seed}").write_json("robustness.json", {
            "epsilons": [0.0, 0.1], "accuracy": {"teacher": [1.0, 0.8], "baseline": acc, "distilled": [0.8, 0.6]}})
    s = summarize_sweep(store, sweeps.open(sweep_id), against="distilled")
    p = s["paired_against"]["baseline"]
    assert s["against"] == "distilled" and set(s["paired_against"]) == {"baseline"}
    assert (p["variant_only"], p["ref_only"]) == (2, 7) and p["diff_mean"] == pytest.approx(-5 / 16)
    assert s["variants_stats"]["baseline"]["robust"]["mean"] == pytest.approx([0.8, 0.4])
    assert s["teacher"]["robust"]["mean"] == pytest.approx([1.0, 0.8])
    text = format_summary(s)
    assert "baseline vs distilled" in text and "under attack" in text
    assert main(["sweeps", "--runs-dir", str(tmp_path), "--show", sweep_id, "--against", "distilled"]) == 0
    assert "baseline vs distilled" in capsys.readouterr().out
    bad = summarize_sweep(store, sweeps.open(sweep_id), against="nope")
    assert "paired_against" not in bad and any("--against nope" in x for x in bad["problems"])


def test_on_several_gpus_the_seeds_run_side_by_side_one_per_gpu(tmp_path, tiny_teacher, tiny_csv):
    """Nothing trains here: each seed's stand-in waits until both GPUs' first seeds are running at once."""
    import threading
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1))
    store, sweeps = RunStore(tmp_path), SweepStore(tmp_path)
    together, seen, lock = threading.Barrier(2, timeout=20), [], threading.Lock()

    def stand_in(cfg, run):
        with lock:
            seen.append((cfg.train.seed, cfg.train.device, run.config()["train"]["device"]))
        if cfg.train.seed in (0, 1):
            together.wait()                  # both first seeds at once, or BrokenBarrierError
        run.update_status(status="failed", error="stand-in")
        return run.status()

    lines = []
    sweep_id = run_sweep(cfg, [0, 1, 2], store, sweeps, run_one=stand_in, devices=["cuda:0", "cuda:1"],
                         report=lines.append)
    assert sorted(seen) == [(0, "cuda:0", "cuda:0"), (1, "cuda:1", "cuda:1"), (2, "cuda:0", "cuda:0")]
    assert set(sweeps.open(sweep_id)["runs"]) == {"0", "1", "2"}
    assert any(line.endswith("on cuda:1") for line in lines)
    # one GPU, or a device named by the user: one after another, the config's device kept
    assert run_sweep(cfg, [3], store, sweeps, run_one=stand_in, devices=[])
    assert seen[-1] == (3, "cpu", "cpu")


def test_a_gpu_by_number_is_a_device_setting():
    assert SessionConfig.from_dict({"train": {"device": "cuda:1"}}).train.device == "cuda:1"
    with pytest.raises(ConfigError, match="cuda:<n>"):
        SessionConfig.from_dict({"train": {"device": "gpu1"}})
