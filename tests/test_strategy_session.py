"""A session with every strategy switched on: each variant trains, records what it used, and is measured."""
import math

import pytest

from distill_core.config import SessionConfig
from distill_core.session import run_session
from distill_core.store import RunStore
from tests.conftest import tiny_config_dict

KD = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.5}


@pytest.fixture(scope="module")
def strategy_run(tiny_teacher, tiny_csv, tmp_path_factory):
    variants = [
        {"name": "baseline", "losses": {"ce": 1.0}},
        {"name": "kd", "losses": KD},
        {"name": "adaptive", "losses": KD, "schedules": {"attention_kl": "linear_down", "ce": "step@2"},
         "temperature_schedule": "linear_down", "attention_focus": True},
        {"name": "auto", "losses": KD, "auto_weights": "uncertainty", "temperature_schedule": "curriculum"},
        {"name": "adversarial", "losses": KD, "adversarial": {"method": "pgd", "epsilon": 0.1, "steps": 2}},
        {"name": "freelb", "losses": KD, "adversarial": {"method": "freelb", "epsilon": 0.1, "steps": 2}},
        {"name": "adv_late", "losses": KD, "adversarial": {"method": "fgsm", "epsilon": 0.1},
         "schedules": {"adversarial": "step@2"}},
        {"name": "generated", "losses": KD, "generated": True},
    ]
    d = tiny_config_dict(tiny_teacher, tiny_csv, variants=variants,
                         transfer={"source": "unused", "copies": 1, "fraction": 0.2})
    d["objectives"] = {}
    d["data"]["train_size"] = 80          # 16 of the 160 rows are left for the transfer data
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = run_session(SessionConfig.from_dict(d), store)
    return store.open(run_id)


def test_every_strategy_variant_trains_and_is_tested(strategy_run):
    s = strategy_run.summary()
    assert s["status"] == "done", s.get("error")
    for name in ("baseline", "kd", "adaptive", "auto", "adversarial", "freelb", "generated"):
        assert s["accuracy"][name] is not None
    assert s["strategies"]["adversarial"] == ["adversarial pgd"]
    assert "generated" not in s["strategies"]["kd"] if "kd" in s["strategies"] else True


def test_schedules_and_temperature_are_recorded_per_step(strategy_run):
    steps = [r for r in strategy_run.train_steps() if r["student"] == "adaptive"]
    first, last = steps[0], steps[-1]
    assert first["weights"]["attention_kl"] > last["weights"]["attention_kl"]      # linear_down
    assert first["weights"]["ce"] == 0.0 and last["weights"]["ce"] == pytest.approx(0.5)   # step@2
    assert first["temperature"] > last["temperature"]
    auto = [r for r in strategy_run.train_steps() if r["student"] == "auto"]
    assert auto[0]["weights"] != auto[-1]["weights"]               # learned uncertainty weights move
    kd = [r for r in strategy_run.train_steps() if r["student"] == "kd"]
    assert all(r["weights"] == {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.5} and r["temperature"] == 2.0
               for r in kd)
    focus = [r for r in strategy_run.metrics() if r["student"] == "adaptive" and r["epoch"] >= 1]
    assert focus and all("attention_focus" in r for r in focus)


def test_adversarial_variant_records_its_loss_and_the_session_measures_robustness(strategy_run):
    adv = [r for r in strategy_run.metrics() if r["student"] == "adversarial" and r["epoch"] >= 1]
    assert all(math.isfinite(r["train_loss"]["adversarial"]) for r in adv)
    rob = strategy_run.read_json("robustness.json")
    assert rob is not None and rob["epsilons"][0] == 0.0 and len(rob["epsilons"]) >= 4
    assert set(rob["accuracy"]) >= {"teacher", "baseline", "adversarial", "generated"}
    # at epsilon 0 the attack changes nothing: the robustness accuracy is the plain accuracy on those examples
    preds = strategy_run.predictions()
    n = rob["n"]
    labels = preds["labels"][:n]
    for name in ("teacher", "baseline"):
        plain = sum(int(p == y) for p, y in zip(preds["predictions"][name][:n], labels)) / n
        assert rob["accuracy"][name][0] == pytest.approx(plain)


def test_a_scheduled_adversarial_weight_makes_no_attack_while_it_is_zero(strategy_run):
    late = {r["epoch"]: r for r in strategy_run.metrics() if r["student"] == "adv_late"}
    assert "adversarial" not in late[1]["train_loss"] and math.isfinite(late[2]["train_loss"]["adversarial"])
    weights = [(r["epoch"], r["weights"]["adversarial"]) for r in strategy_run.train_steps()
               if r["student"] == "adv_late"]
    assert all(w == (0.0 if e <= 1 else 1.0) for e, w in weights)


def test_generated_variant_takes_extra_steps_on_teacher_labelled_data(strategy_run):
    s = strategy_run.summary()
    gen = s["generated"]
    assert gen["used_by"] == ["generated"] and gen["augmented"] == 80 and gen["transfer"] > 0
    assert gen["total"] == gen["augmented"] + gen["transfer"]
    record = strategy_run.read_json("generated.json")
    assert record["counts"]["total"] == gen["total"] and record["examples"]
    steps = {name: sum(r["steps"] for r in strategy_run.train_steps() if r["student"] == name)
             for name in ("kd", "generated")}
    per_epoch = 80 // 16
    extra = math.ceil(gen["total"] / 16)
    assert steps["kd"] == 2 * per_epoch and steps["generated"] == 2 * (per_epoch + extra)


def test_generated_batches_never_carry_labels(tiny_teacher, tiny_csv, tmp_path, monkeypatch):
    """Every step of the generated variant on generated data sees labels=None; its shared steps see the labels."""
    from distill_core.session import variant as variant_mod
    seen = []
    real = variant_mod.Variant.step

    def spy(self, batch, teacher, ctx, where=""):
        if self.name == "gen":
            seen.append((batch.labels is None, "generated data" in where))
        return real(self, batch, teacher, ctx, where)
    monkeypatch.setattr(variant_mod.Variant, "step", spy)
    d = tiny_config_dict(tiny_teacher, tiny_csv, variants=[{"name": "gen", "losses": KD, "generated": True}],
                         transfer={"source": "unused"})
    d["objectives"] = {}
    d["data"]["train_size"] = 80
    d["train"]["epochs"] = 1
    store = RunStore(tmp_path / "runs")
    run_session(SessionConfig.from_dict(d), store)
    assert seen and all(no_labels == on_generated for no_labels, on_generated in seen)
    assert any(on_generated for _, on_generated in seen)


def test_suggested_layer_map_comes_from_the_finished_run(strategy_run, tiny_teacher, tiny_csv):
    from distill_core.analysis import suggest_for_run
    store = RunStore(strategy_run.path.parent)
    d = tiny_config_dict(tiny_teacher, tiny_csv, variants=[{"name": "kd", "losses": KD}])
    d["objectives"] = {"layer_map": "suggested"}
    d["data"]["train_size"] = 80
    d["train"]["epochs"] = 1
    run = store.open(run_session(SessionConfig.from_dict(d), store))
    s = run.summary()
    assert s["status"] == "done" and s["layer_map_from"] == strategy_run.id
    assert [t for t, _ in s["pairs"]] == suggest_for_run(strategy_run)["layers"]


@pytest.mark.parametrize("content,match", [
    ("words,other\nsome text,1\n", "no column 'text'|text_column"),
    ("text\n\n", "no non-empty texts|holds no"),
])
def test_a_bad_transfer_file_is_refused_before_the_teacher_is_prepared(tiny_teacher, tiny_csv, tmp_path, monkeypatch,
                                                                       content, match):
    from distill_core.errors import DistillError
    from distill_core.session import Session
    from distill_core.modality.text import task as text_task
    bad = tmp_path / "transfer.csv"
    bad.write_text(content)
    called = []
    monkeypatch.setattr(text_task, "prepare_teacher", lambda *a, **k: called.append(1))
    d = tiny_config_dict(tiny_teacher, tiny_csv, variants=[{"name": "gen", "losses": KD, "generated": True}],
                         transfer={"source": str(bad)})
    d["objectives"] = {}
    store = RunStore(tmp_path / "runs")
    cfg = SessionConfig.from_dict(d)
    with pytest.raises(DistillError, match=match):
        Session(cfg, store.create(cfg.to_dict())).prepare()
    assert not called


def test_show_prints_the_strategies_the_generated_data_and_robustness(strategy_run, capsys):
    from distill_core.__main__ import main
    assert main(["show", strategy_run.id, "--runs-dir", str(strategy_run.path.parent)]) == 0
    out = capsys.readouterr().out
    assert "adversarial: adversarial pgd" in out and "augmented copies, labelled by the teacher, used by generated" in out
    assert "accuracy under attack" in out


def test_the_generated_data_notices_reach_the_run(strategy_run):
    notices = strategy_run.summary()["notices"]
    assert any("the transfer texts are rows of the dataset the teacher was fine-tuned on" in n for n in notices)
