"""benchmarks/session_bench.py: it runs, calls only the engine's public names, and its pieces work on tiny models."""
import ast
import math

import pytest

from distill_core import RunStore, SessionConfig

from conftest import BENCHMARKS, load_benchmark, tiny_config_dict

BENCH = BENCHMARKS / "session_bench.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("session_bench")


def test_help_lists_the_options(bench, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--threads", "--skip-session", "--skip-uncached", "--json", "--device",
                 "--skip-strategies"):
        assert flag in out


def test_only_public_engine_names_and_no_patching():
    """No `_name` imported from distill_core, no `x._name` at all (dunders aside), nothing set on an engine name."""
    tree = ast.parse(BENCH.read_text())
    engine: set[str] = set()            # names bound to distill_core modules or to what they export
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "distill_core":
                    engine.add((a.asname or a.name).split(".")[0])
                    problems += [f"import {a.name}" for part in a.name.split(".") if part.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "distill_core":
            problems += [f"from {node.module} import ..." for part in node.module.split(".") if part.startswith("_")]
            for a in node.names:
                engine.add(a.asname or a.name)
                if a.name.startswith("_"):
                    problems.append(f"from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            problems.append(f"line {node.lineno}: .{node.attr}")
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in engine:
                problems.append(f"line {node.lineno}: sets {t.value.id}.{t.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            problems.append(f"line {node.lineno}: {node.func.id}()")
    assert engine, "the benchmark imports nothing from the engine?"
    assert not problems, problems


def test_pieces_on_a_tiny_session(bench, tmp_path, tiny_teacher, tiny_csv):
    """Measures 1 and 2 (estimated) on tiny models, and a timed session (3, 4) that finds the teacher's outputs in
    the disk cache that the set-up's prepare filled."""
    d = tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1)
    d.pop("objectives")                              # the default variants: baseline and distilled
    d["teacher"]["finetune"] = "never"               # a local teacher folder: its outputs are cacheable
    cfg = SessionConfig.from_dict(d)
    assert cfg.variant_names == ["baseline", "distilled"]
    setup = bench.Setup(cfg, RunStore(tmp_path / "scratch").create(cfg.to_dict()))
    assert {"load data", "teacher outputs", "probe set"} <= set(setup.clock.phases)
    assert setup.teacher_outputs_cached is False
    steps = bench.bench_steps(setup, warmup=1, steps=1)
    assert steps["steps"] == 1 and math.isfinite(steps["ratio_of_medians"])
    assert set(steps["breakdown"]) == {"sdpa", "eager", "eager+capture", "eager+capture+losses"}
    rf = bench.recording_by_functions(setup, steps, repeats=1)
    assert set(rf) == {"baseline", "distilled"} and all(r["record_s"] > 0 for r in rf.values())
    bound = bench.bench_bound(setup, steps)           # measure 8
    for name in ("baseline", "distilled"):
        b = bound[name]
        assert b["flops"] > 0 and b["update_bytes"] > 0 and b["bound_s"] == b["compute_s"] + b["memory_s"]
        assert b["ratio"] == pytest.approx(b["step_s"] / b["bound_s"])
    batches = setup.p.modality.batches("train", cfg.train.batch_size, seed=2)[:3]
    opts = bench.bench_optimizers(setup, batches, warmup=1)    # measure 8'
    assert list(opts) == list(bench.OPTIMIZERS) and all(x["step_s"] > 0 for x in opts.values())
    alone = bench.students_alone(setup, epochs=1)     # measure 4+
    assert alone["students"] == 2 and alone["steps"] == 2 * setup.p.steps_per_epoch and alone["wall_s"] > 0

    d = bench.timed_session(cfg, tmp_path / "runs")
    assert d["status"] == "done" and d["teacher_outputs_cached"] is True
    assert d["teacher_outputs_s"] > 0 and {"load data", "train", "evaluate"} <= set(d["phases"])
    assert sum(d["phases"].values()) == pytest.approx(d["wall_s"], rel=0.2, abs=0.5)

    res = {"machine": {"date": "2026-01-01T00:00:00", "cpu": "cpu", "cores": 2, "torch": "x"}, "steps": steps,
           "recording_functions": rf, "recording": bench.recording_ratios(d["metrics"]),
           "sessions": [{"case": bench.cache_case(d), **bench.session_for_json(d)}], "bound": bound,
           "alone": {**alone, "session_wall_s": d["wall_s"], "ratio": d["wall_s"] / alone["wall_s"]}}
    rows = bench.summary_table(res)
    measures = [r["measure"] for r in rows]
    assert measures[0].startswith("1.")
    assert any("(teacher loaded, outputs from the disk cache)" in m for m in measures)
    assert sum(m.startswith("8. ") for m in measures) == 2 and any(m.startswith("4+.") for m in measures)
    assert all(r["met"] in ("yes", "NO") for r in rows if r["measure"][:2] in ("8.", "4+"))
    assert any(m.startswith("2. record / train per epoch (distilled, worst") for m in measures)


def test_strategy_costs_on_a_tiny_session(bench, tmp_path, tiny_teacher, tiny_csv):
    """Measure 7 on tiny models: the adversarial and generated variants step, and the table has their rows."""
    d = tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=1)
    d.pop("objectives")
    d["teacher"]["finetune"] = "never"
    d["data"]["train_size"] = 64                     # leaves 32 rows unused for the generated data
    g = bench.bench_strategies(SessionConfig.from_dict(d), tmp_path, warmup=1, steps=2)
    assert g["steps"] == 2 and math.isfinite(g["adversarial_ratio"]) and g["adversarial_target"] == 3
    assert g["generated_examples"] == 32 and g["generated_steps"] == 2 and g["size_ratio"] == pytest.approx(1.5)
    res = {"machine": {"date": "2026-01-01T00:00:00", "cpu": "cpu", "cores": 2, "torch": "x"}, "strategies": g}
    measures = [r["measure"] for r in bench.summary_table(res)]
    assert measures == ["7. adversarial step (PGD 2 steps) / plain distillation step",
                        "7'. generated-data epoch / plain epoch, over their size ratio"]


def test_picture_folders_makes_a_folder_the_image_sessions_read(tmp_path):
    from distill_core.modality.vision.data import check_image_source
    folders = load_benchmark("picture_folders")
    folders.make_shapes(tmp_path / "shapes", per_class=4, size=16)
    info = check_image_source(str(tmp_path / "shapes"), max_file_mb=50)
    assert info["classes"] == {"circle": 4, "square": 4, "triangle": 4}
    assert info["size"] == (16, 16) and info["channels"] == 3


def test_the_task_and_pair_rows_say_what_was_met(bench):
    """Measures 9 and 10 in the summary table, from results of the shapes they return (nothing trained)."""
    tasks = {"tagging": {"reference": "baseline", "steps": 5, "step_s": {"baseline": 0.04, "distilled": 0.048},
                         "ratio": {"distilled": 1.2}, "teacher_outputs_first_s": 2.0, "teacher_outputs_first_cached": False,
                         "teacher_outputs_again_s": 0.3, "teacher_outputs_again_cached": True,
                         "prepare_first_s": 9.0, "prepare_again_s": 1.0},
             "language_model": {"reference": "baseline", "steps": 5, "step_s": {"baseline": 0.06, "forward_kl": 0.13,
                                                                                "on_policy": 0.22},
                                "ratio": {"forward_kl": 2.2, "on_policy": 3.6}, "teacher_outputs_first_s": None,
                                "teacher_outputs_first_cached": None, "teacher_outputs_again_s": None,
                                "teacher_outputs_again_cached": None, "prepare_first_s": 50.0, "prepare_again_s": 1.4}}
    pair = {"alone_wall_s": 36.0, "pair_wall_s": [35.0, 42.0], "pair_waited_s": [0.0, 35.0],
            "pair_process_s": [41.0, 84.0], "speed_vs_alone": [1.03, 0.86]}
    rows = {r["measure"]: r for r in bench.summary_table({"machine": {}, "tasks": tasks, "pair": pair})}
    assert rows["9. tagging: distilled step / baseline step (median of 5 batches)"]["met"] == "yes"
    assert rows["9. language_model: forward_kl step / baseline step (median of 5 batches)"]["met"] == "NO"
    assert rows["9. language_model: on_policy step / baseline step (median of 5 batches)"]["met"] == "-"
    assert rows["9'. tagging: teacher outputs phase, first prepare / again"]["met"] == "yes"
    assert "not cached" in rows["9'. language_model: the teacher's outputs"]["value"]
    classroom = next(r for r in rows.values() if r["measure"].startswith("10. classroom"))
    assert classroom["met"] == "yes" and classroom["value"] == "36.0 s"
    two = next(r for r in rows.values() if r["measure"].startswith("10'."))
    assert two["met"] == "yes" and two["value"].startswith("0.86 worst")
