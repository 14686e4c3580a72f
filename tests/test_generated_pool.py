"""Generated data whose labels no model saw, and the labels-only reference on the rows a teacher did see."""
import pytest

from distill_core.config import SessionConfig
from distill_core.errors import ConfigError, DataError
from distill_core.session import run_session
from distill_core.store import RunStore
from distill_core.strategies.generated import hold_out_from_teacher, load_transfer_rows
from distill_core.config import TransferConfig
from tests.conftest import tiny_config_dict
from tests.test_generated import make_splits

KD = {"ce": 0.5, "logit_kd": 0.5}


def test_held_out_rows_are_divided_between_teacher_and_transfer():
    extra = [f"text {i}" for i in range(11)]
    splits = make_splits(extra)
    cfg = TransferConfig(source="unused", held_out_from_teacher=True, seed=2)
    kept, pool = hold_out_from_teacher(cfg, splits)
    assert sorted(pool["teacher_rows"] + pool["transfer_rows"]) == list(range(11))
    assert len(pool["teacher_rows"]) == 5 and not set(pool["teacher_rows"]) & set(pool["transfer_rows"])
    assert kept.extra_texts == [extra[i] for i in pool["teacher_rows"]]           # the teacher's rows
    texts, labels = load_transfer_rows(cfg, kept, pool)
    assert texts == [extra[i] for i in pool["transfer_rows"]]                     # the rest, labels hidden
    assert labels == [splits.extra_labels[i] for i in pool["transfer_rows"]]
    assert not set(texts) & set(kept.extra_texts)
    assert kept.fingerprint != splits.fingerprint                                 # another teacher in the cache
    assert hold_out_from_teacher(cfg, splits)[1] == pool                          # seeded
    assert hold_out_from_teacher(TransferConfig(source="unused", held_out_from_teacher=True, seed=3),
                                 splits)[1] != pool
    same, none = hold_out_from_teacher(TransferConfig(source="unused"), splits)  # off: every row, as before
    assert same is splits and none is None
    with pytest.raises(DataError, match="held_out_from_teacher"):
        hold_out_from_teacher(cfg, make_splits(["only one"]))


def test_config_refuses_what_cannot_work(tiny_teacher, tiny_csv):
    with pytest.raises(ConfigError, match="transfer.source: unused"):
        TransferConfig(source="texts.csv", held_out_from_teacher=True)
    d = tiny_config_dict(tiny_teacher, tiny_csv, objectives={}, transfer={"source": "unused"},
                         variants=[{"name": "labels", "losses": {"logit_kd": 1.0}, "transfer_labels": True}])
    with pytest.raises(ConfigError, match="give it ce"):
        SessionConfig.from_dict(d)
    d["variants"] = [{"name": "both", "losses": KD, "generated": True, "transfer_labels": True}]
    with pytest.raises(ConfigError, match="keep one"):
        SessionConfig.from_dict(d)


@pytest.fixture(scope="module", params=[False, True], ids=["teacher_saw", "held_out"])
def pool_run(request, tiny_teacher, tiny_csv, tmp_path_factory):
    variants = [{"name": "baseline", "losses": {"ce": 1.0}},
                {"name": "generated", "losses": KD, "generated": True},
                {"name": "labels_seen", "losses": {"ce": 1.0}, "transfer_labels": True}]
    d = tiny_config_dict(tiny_teacher, tiny_csv, objectives={}, variants=variants,
                         transfer={"source": "unused", "held_out_from_teacher": request.param})
    d["data"]["train_size"] = 80          # 16 of the 160 rows are left unused
    store = RunStore(tmp_path_factory.mktemp("runs"))
    return request.param, store.open(run_session(SessionConfig.from_dict(d), store))


def test_the_run_records_whose_labels_the_transfer_texts_carry(pool_run):
    held_out, run = pool_run
    s = run.summary()
    assert s["status"] == "done", s.get("error")
    record = run.read_json("generated.json")
    pool = record["pool"]
    assert pool["held_out_from_teacher"] is held_out and pool["teacher_saw_labels"] is not held_out
    assert record["used_by"] == ["generated"] and record["labels_used_by"] == ["labels_seen"]
    assert any("labels" in n for n in record["notices"])          # the Generated data page shows these
    notices = " ".join(s.get("notices") or [])
    # the teacher learned from the 80 training rows and all 16 unused rows, or only from its half of them
    assert f"fine-tuned on {88 if held_out else 96} examples" in notices
    if held_out:
        assert sorted(pool["teacher_rows"] + pool["transfer_rows"]) == list(range(16))
        assert not set(pool["teacher_rows"]) & set(pool["transfer_rows"])
        assert len(record["examples"]) <= len(pool["transfer_rows"]) == 8
        assert "whose labels no model saw" in notices
    else:
        assert "teacher_rows" not in pool and "memory of those labels" in notices


def test_the_labels_only_reference_steps_on_the_transfer_rows_with_their_labels(pool_run):
    _, run = pool_run
    steps = {}
    for r in run.train_steps():
        steps[r["student"]] = steps.get(r["student"], 0) + r["steps"]
    # both generated-data variants take the shared steps and the generated ones: more than the baseline
    assert steps["labels_seen"] == steps["generated"] > steps["baseline"]
    epochs = [r for r in run.metrics() if r["student"] == "labels_seen" and r["epoch"] >= 1]
    assert epochs and all("ce" in r["train_loss"] and "logit_kd" not in r["train_loss"] for r in epochs)


def test_the_generated_data_page_names_the_labels_only_reference(pool_run, monkeypatch):
    from app_helpers import VIEWS, open_page, texts
    _, run = pool_run
    monkeypatch.setenv("ADS_RUNS_DIR", str(run.path.parent))
    at = open_page(VIEWS / "generated.py")
    md = texts(at.markdown)
    line = next(x for x in md.splitlines() if x.startswith("Source of the transfer texts"))
    assert "With their true labels (the labels-only reference):" in line and "seen" in line.split(":")[-1]
