import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from distill_core.__main__ import main

from conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parent.parent


def test_run_runs_show(tmp_path, tiny_teacher, tiny_csv, capsys):
    cfg = tiny_config_dict(tiny_teacher, tiny_csv)
    cfg["train"]["epochs"] = 3
    p = tmp_path / "my.yaml"
    p.write_text(yaml.safe_dump(cfg))
    runs = tmp_path / "runs"
    code = main(["run", "--config", str(p), "--set", "train.seed=3", "--epochs", "1", "--name", "cli test",
                 "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    run_id = out[0]
    assert "cli-test" in run_id
    assert any("test accuracy" in line for line in out)
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "done" in listing and "reviews.csv" in listing
    assert main(["show", run_id, "--json", "--runs-dir", str(runs)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["train"]["epochs"] == 1 and shown["config"]["train"]["seed"] == 3
    assert shown["summary"]["divergence"]["epochs"] == [0, 1]


def test_data_flags(tmp_path, tiny_teacher, tiny_csv, capsys):
    cfg = tiny_config_dict(tiny_teacher, tiny_csv)
    cfg["data"]["text_column"], cfg["data"]["label_column"] = "wrong", "wrong"
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    code = main(["run", "--config", str(p), "--data", str(tiny_csv), "--text-column", "review",
                 "--label-column", "sentiment", "--epochs", "1", "--no-baseline", "--runs-dir", str(tmp_path), "--quiet"])
    assert code == 0


def test_bad_input_is_one_line_without_traceback(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    for args, expected in [
        (["run", "--epochs", "0"], "error: epochs must be a whole number of at least 1"),
        (["run", "--set", "objectives.losses.focal=1"], "error: unknown loss focal"),
        (["run", "--set", "train.epochs"], "error: --set takes key=value"),
        (["show", "../etc"], "is not a valid run id"),
        (["show", "nope"], "error: no run nope"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "distill_core", *args, "--runs-dir", str(tmp_path)],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_runs_on_empty_store(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert "no runs" in capsys.readouterr().out


def test_latency_times_a_finished_run_again(finished_run, tmp_path, capsys):
    import shutil
    store, run_id = finished_run
    runs = tmp_path / "runs"
    shutil.copytree(store.root / run_id, runs / run_id)
    assert main(["latency", run_id, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    record = json.loads((runs / run_id / "latency.json").read_text())
    assert set(record["latency_ms"]) == {"teacher", "baseline", "distilled"}
    assert record["conditions"]["threads"] == 1
    assert f"{record['latency_ms']['baseline']:.2f} ms" in out and "the teacher's speed" in out
    assert "rounds with the models interleaved" in out and "written:" in out
