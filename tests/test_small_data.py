"""What the defaults do with a small or unfamiliar file: split fractions, repeated texts, step floors, the teacher's
best epoch, and a student that starts from the teacher's knowledge."""
import csv

import torch

from distill_core import RunStore, SessionConfig, run_session
from distill_core.config import DataConfig, TeacherConfig, floor_epochs, resolve_init
from distill_core.modality.text.data import load_splits
from tests.conftest import make_texts, tiny_config_dict


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_a_small_file_is_split_by_fractions_that_keep_most_for_training(tmp_path):
    rows = [(f"message number {i} about {'parcels' if i % 4 else 'refunds'}", "a" if i % 4 else "b")
            for i in range(200)]
    s = load_splits(DataConfig(source=str(write_csv(tmp_path / "d.csv", rows))))
    assert (len(s.train_texts), len(s.val_texts), len(s.test_texts)) == (140, 20, 40)
    assert any("split 70/10/20 instead, 140 examples for training, 20 for validation and 40 for testing" in n
               for n in s.notices)
    assert s.extra_texts == []
    # a file large enough for the configured sizes keeps them, and the rest is left to the teacher
    big = load_splits(DataConfig(source=str(write_csv(tmp_path / "e.csv", rows)), train_size=50, val_size=10,
                                 test_size=20))
    assert (len(big.train_texts), len(big.val_texts), len(big.test_texts), len(big.extra_texts)) == (50, 10, 20, 120)
    assert not any("instead" in n for n in big.notices)


def test_repeated_texts_in_a_users_file_stay_in_one_split_and_are_counted(tmp_path):
    rows = [(f"text {i}", "x" if i % 2 else "y") for i in range(100)]
    rows += [("Text 3", "x")] * 5 + [("text  7", "y")] * 3          # case and spacing do not make a new text
    s = load_splits(DataConfig(source=str(write_csv(tmp_path / "d.csv", rows))))
    key = lambda t: " ".join(t.split()).lower()  # noqa: E731
    splits = [{key(t) for t in x} for x in (s.train_texts, s.val_texts, s.test_texts)]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert len(s.train_texts) + len(s.val_texts) + len(s.test_texts) == 108     # every copy kept
    where = next(x for x in (s.train_texts, s.val_texts, s.test_texts) if "text 3" in x)
    assert where.count("Text 3") == 5
    notice = next(n for n in s.notices if "appear more than once" in n)
    assert notice.startswith("2 texts appear more than once (8 extra rows)") and "different labels" in notice


def test_floor_epochs():
    assert floor_epochs(4, steps_per_epoch=94, min_steps=300, cap=30) == 4        # 376 steps already
    assert floor_epochs(4, steps_per_epoch=22, min_steps=300, cap=30) == 14
    assert floor_epochs(2, steps_per_epoch=1, min_steps=300, cap=30) == 30        # capped
    assert floor_epochs(4, steps_per_epoch=22, min_steps=0, cap=30) == 4
    assert resolve_init("auto", 3000, widths_match=False) == "random"
    assert resolve_init("auto", 500, widths_match=True) == "from_teacher"
    assert resolve_init("auto", 500, widths_match=False) == "teacher_embeddings"
    assert resolve_init("random", 500, widths_match=True) == "random"
    # a student wider than the teacher can take neither its layers nor its embeddings: it stays random
    assert resolve_init("auto", 500, widths_match=False, can_project=False) == "random"


def test_teacher_fine_tune_keeps_its_best_epoch_and_stops_after_patience(tiny_teacher, monkeypatch):
    from distill_core import teacher as teacher_mod
    from distill_core.models import load_classifier
    model, _ = load_classifier(str(tiny_teacher), 2)
    ids = [[101, 2000 + i % 50, 2100 + i % 7, 102] for i in range(64)]
    labels = [i % 2 for i in range(64)]
    scripted = iter([0.5, 0.9, 0.6, 0.7, 0.95])      # epoch 2 is best; epochs 3 and 4 are not better: stop
    states = []

    def fake_logits(m, *a, **k):
        states.append({k2: v.detach().clone() for k2, v in m.state_dict().items()})
        return torch.zeros(4, 2)
    monkeypatch.setattr(teacher_mod, "predict_logits", fake_logits)
    monkeypatch.setattr(teacher_mod, "accuracy_and_loss", lambda logits, y: (next(scripted), 0.0))
    cfg = TeacherConfig(source=str(tiny_teacher), finetune_epochs=5, finetune_lr=1e-3, finetune_patience=2,
                        finetune_min_steps=0)
    fit = teacher_mod.finetune(model, ids, labels, (ids[:4], labels[:4]), 0, cfg, torch.device("cpu"), False, None)
    assert (fit["epochs_planned"], fit["epochs_run"], fit["kept_epoch"]) == (5, 4, 2)
    assert [c["val_accuracy"] for c in fit["curve"]] == [0.5, 0.9, 0.6, 0.7]
    kept = model.state_dict()
    assert all(torch.equal(kept[k], states[1][k]) for k in kept)             # the weights of epoch 2
    assert not all(torch.equal(kept[k], states[3][k]) for k in kept)


def test_teacher_embeddings_start_from_the_teachers_token_geometry(tiny_teacher):
    from distill_core.config import StudentConfig
    from distill_core.models import build_student, load_classifier
    teacher, _ = load_classifier(str(tiny_teacher), 2)
    t = teacher.get_input_embeddings().weight[:200].detach()
    torch.manual_seed(0)
    same_width = build_student(StudentConfig(layers=1, heads=4, hidden=32, intermediate=64), teacher, 2, None,
                               init="teacher_embeddings")
    s = same_width.get_input_embeddings().weight[:200].detach()
    cos = lambda e: torch.nn.functional.normalize(e, dim=1) @ torch.nn.functional.normalize(e, dim=1).T  # noqa: E731
    assert torch.allclose(cos(s), cos(t), atol=1e-4)        # all directions kept: a rotation, angles unchanged
    narrow = build_student(StudentConfig(layers=1, heads=2, hidden=16, intermediate=32), teacher, 2, None,
                           init="teacher_embeddings")
    n = narrow.get_input_embeddings().weight.detach()
    torch.manual_seed(0)
    rand = build_student(StudentConfig(layers=1, heads=2, hidden=16, intermediate=32), teacher, 2, None)
    assert n.shape == (t.shape[1] and teacher.config.vocab_size, 16) and torch.isfinite(n).all()
    assert not torch.equal(n, rand.get_input_embeddings().weight.detach())


def test_a_small_file_gets_more_epochs_a_student_from_the_teacher_and_says_so(tmp_path, tiny_teacher, monkeypatch):
    monkeypatch.setenv("ADS_CACHE_DIR", str(tmp_path / "cache"))
    data = write_csv(tmp_path / "small.csv", make_texts(120))
    d = tiny_config_dict(tiny_teacher, data, train__epochs=1, train__min_steps=25, teacher__finetune_min_steps=12,
                         teacher__finetune_epochs=1)
    d["data"].update(text_column="text", label_column="label", train_size=3000)   # too many: fractions
    d["student"]["init"] = "auto"
    run_id = run_session(SessionConfig.from_dict(d), RunStore(tmp_path / "runs"))
    run = RunStore(tmp_path / "runs").open(run_id)
    summary = run.summary()
    assert summary["status"] == "done"
    # 84 training examples, batch 16: 6 steps an epoch, so 5 epochs reach 25 steps
    assert summary["epochs"] == 5 and summary["divergence"]["epochs"] == [0, 1, 2, 3, 4, 5]
    assert summary["student_init"] == "teacher_embeddings"
    fit = summary["teacher_fit"]
    assert fit["epochs_planned"] == 4 and 1 <= fit["kept_epoch"] <= fit["epochs_run"] <= 4   # 3 steps an epoch (batch 32)
    notes = " ".join(summary["notices"])
    assert "split 70/10/20 instead" in notes and "trained 5 epochs instead of 1" in notes
    assert "student.init auto chose teacher_embeddings" in notes and "the teacher was fine-tuned on 84" in notes
    pred = run.predictions()
    assert set(pred["predictions"]) == {"teacher", "baseline", "distilled"} and len(pred["labels"]) == 24
    assert summary["paired"]["distilled"]["n"] == 24 and 0 <= summary["paired"]["distilled"]["p"] <= 1
