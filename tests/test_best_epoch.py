"""Best-epoch weights: kept beside the final ones when another epoch validated best, tested, and loadable."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from distill_core import RunStore, SessionConfig, run_session
from distill_core.analysis import load_run_models
from distill_core.errors import NonFiniteLossError
from distill_core.modality.text.modality import TextModality
from distill_core.session import Session

from conftest import poison_logit_kd, tiny_config_dict

# validation accuracy by epoch (0, 1, 2, 3) of each variant, in session order
SCRIPT = {"baseline": [0.5, 0.8, 0.8, 0.6],      # best at epoch 1 (epoch 2 ties it: the first epoch wins)
          "distilled": [0.5, 0.6, 0.7, 0.8]}     # best at its last epoch


def scripted_validation(mp: pytest.MonkeyPatch, script: dict[str, list[float]]) -> None:
    """The variants' validation accuracy follows `script` (the loss stays the real one)."""
    real = TextModality.evaluate
    seen: dict[int, list] = {}          # id(model) -> [variant name, calls so far]
    names = list(script)

    def evaluate(self, model, split, device, mixed_precision=True):
        acc, loss = real(self, model, split, device, mixed_precision)
        if split != "val":
            return acc, loss
        if id(model) not in seen:               # record_epoch evaluates the variants in session order
            seen[id(model)] = [names[len(seen)], 0]
        entry = seen[id(model)]
        entry[1] += 1
        return script[entry[0]][entry[1] - 1], loss

    mp.setattr(TextModality, "evaluate", evaluate)


def state_equal(model_state: dict, expected: dict) -> bool:
    common = set(model_state) & set(expected)
    assert common, "no parameter in common"
    return all(torch.equal(model_state[k].cpu(), expected[k]) for k in common)


@pytest.fixture(scope="module")
def peaked(tmp_path_factory, tiny_teacher, tiny_csv):
    """(session, run) of a finished 3-epoch session whose baseline validated best at epoch 1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        scripted_validation(mp, SCRIPT)
        store = RunStore(tmp_path_factory.mktemp("best_runs"))
        cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=3))
        run = store.create(cfg.to_dict())
        session = Session(cfg, run)
        session.execute()
    return session, run


def test_the_best_epoch_is_kept_only_where_it_is_not_the_last(peaked):
    session, run = peaked
    summary = run.summary()
    assert summary["status"] == "done"
    best = summary["best_epoch"]
    assert best["baseline"]["epoch"] == 1 and best["baseline"]["final_epoch"] == 3
    assert best["baseline"]["val_accuracy"] == pytest.approx(0.8)
    assert best["distilled"] == {"epoch": 3, "val_accuracy": pytest.approx(0.8),
                                 "test_accuracy": summary["accuracy"]["distilled"], "final_epoch": 3}
    assert (run.path / "models" / "baseline.best" / "model.safetensors").is_file()
    assert not (run.path / "models" / "distilled.best").exists()
    assert run.kept_weights("baseline") == {"final": 3, "best": 1}
    assert run.kept_weights("distilled") == {"final": 3, "best": 3}
    assert run.model_dir("baseline", "best") == run.path / "models" / "baseline.best"
    assert run.model_dir("distilled", "best") == run.model_dir("distilled") == run.path / "models" / "distilled"
    with pytest.raises(ValueError, match="weights"):
        run.model_dir("baseline", "middle")
    v = {x.name: x for x in session.prepared.variants}
    assert v["baseline"].best_epoch == 1 and v["baseline"].last_epoch == 3 and v["baseline"].best_differs
    assert v["distilled"].best_state is v["distilled"].last_state      # one copy when the best is the last


def test_saved_best_weights_are_the_kept_best_state_and_were_tested(peaked):
    session, run = peaked
    baseline = next(x for x in session.prepared.variants if x.name == "baseline")
    saved_best = load_file(str(run.model_dir("baseline", "best") / "model.safetensors"))
    saved_final = load_file(str(run.model_dir("baseline") / "model.safetensors"))
    assert state_equal(saved_best, baseline.best_state)
    assert state_equal(saved_final, baseline.last_state)
    assert not state_equal(saved_best, saved_final)
    # the model itself is back at its final weights after the best ones were tested and saved
    assert state_equal(baseline.model.state_dict(), baseline.last_state)
    # test accuracy of the best weights: what those weights score on the test split
    p = session.prepared
    rm = load_run_models(run, "best")
    expected = p.modality.predict(rm.models["baseline"], "test", p.device, session.config.train.mixed_precision)
    assert run.summary()["best_epoch"]["baseline"]["test_accuracy"] == pytest.approx(expected["accuracy"])


def test_load_run_models_loads_the_chosen_weights(peaked):
    session, run = peaked
    v = {x.name: x for x in session.prepared.variants}
    best, final = load_run_models(run, "best"), load_run_models(run)
    assert best.weights == "best" and final.weights == "final"
    assert best.loaded == {"baseline": {"weights": "best", "epoch": 1}, "distilled": {"weights": "best", "epoch": 3}}
    assert final.loaded == {"baseline": {"weights": "final", "epoch": 3},
                            "distilled": {"weights": "final", "epoch": 3}}
    assert state_equal(best.models["baseline"].state_dict(), v["baseline"].best_state)
    assert state_equal(final.models["baseline"].state_dict(), v["baseline"].last_state)
    assert not state_equal(final.models["baseline"].state_dict(), v["baseline"].best_state)
    # best == final: the final folder serves both
    assert state_equal(best.models["distilled"].state_dict(), v["distilled"].last_state)
    assert state_equal(best.models["teacher"].state_dict(), final.models["teacher"].state_dict())
    with pytest.raises(ValueError, match="weights"):
        load_run_models(run, "middle")


def test_a_run_written_before_best_weights_reads_as_final_only(peaked, tmp_path):
    _, run = peaked
    old = RunStore(tmp_path).create({})
    shutil.rmtree(old.path)
    shutil.copytree(run.path, old.path)
    shutil.rmtree(old.path / "models" / "baseline.best")
    summary = json.loads((old.path / "summary.json").read_text())
    del summary["best_epoch"]
    old.write_json("summary.json", summary)
    assert old.kept_weights("baseline") == {"final": 3}
    assert old.model_dir("baseline", "best") == old.model_dir("baseline")
    rm = load_run_models(old, "best")
    assert rm.loaded["baseline"] == {"weights": "final", "epoch": 3}
    assert old.kept_weights("nobody") == {}


def test_a_best_folder_that_is_not_there_is_not_claimed(peaked, tmp_path):
    _, run = peaked
    copy = RunStore(tmp_path).create({})
    shutil.rmtree(copy.path)
    shutil.copytree(run.path, copy.path)
    shutil.rmtree(copy.path / "models" / "baseline.best")          # e.g. a crash while it was written
    assert copy.kept_weights("baseline") == {"final": 3}
    assert load_run_models(copy, "best").loaded["baseline"] == {"weights": "final", "epoch": 3}


def test_a_failed_session_keeps_its_best_weights_too(tmp_path, tiny_teacher, tiny_csv, monkeypatch):
    scripted_validation(monkeypatch, {"baseline": [0.5, 0.9, 0.7, 0.7], "distilled": [0.5, 0.6, 0.7, 0.8]})
    poison_logit_kd(monkeypatch, after_calls=12)          # 6 steps per epoch: NaN in epoch 3
    store = RunStore(tmp_path)
    cfg = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv, train__epochs=3))
    with pytest.raises(NonFiniteLossError):
        run_session(cfg, store)
    [info] = store.list()
    run = store.open(info.run_id)
    assert run.status()["status"] == "failed"
    best = run.summary()["best_epoch"]
    assert best["baseline"] == {"epoch": 1, "val_accuracy": pytest.approx(0.9), "test_accuracy": None,
                                "final_epoch": 2}
    assert best["distilled"] == {"epoch": 2, "val_accuracy": pytest.approx(0.7), "test_accuracy": None,
                                 "final_epoch": 2}
    assert run.kept_weights("baseline") == {"final": 2, "best": 1}
    assert (run.path / "models" / "baseline.best" / "config.json").is_file()
    assert not (run.path / "models" / "distilled.best").exists()
    rm = load_run_models(run, "best")
    assert rm.loaded["baseline"] == {"weights": "best", "epoch": 1}
    assert not state_equal(rm.models["baseline"].state_dict(), load_run_models(run).models["baseline"].state_dict())
    assert run.epochs_done() == 2
