"""Several teachers: the combination rules, the settings, and a session whose variants learn from different teachers."""
import math

import pytest
import torch

from distill_core import RunStore, SessionConfig, run_session
from distill_core.ensemble import Combine, EnsembleBatches, combine_logits, mean_maps, teacher_weights
from distill_core.errors import ConfigError
from distill_core.session import Session
from distill_core.session.variant import TeacherBatch
from distill_core.teacher import part_indices

from conftest import tiny_config_dict

# two teachers, two examples, two classes
LOGITS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],
                       [[0.0, 0.0], [0.0, 3.0]]])


def test_mean_averages_the_logits():
    assert torch.allclose(combine_logits(LOGITS, "mean"), torch.tensor([[1.0, 0.0], [0.0, 2.0]]))


def test_confidence_weights_each_teacher_by_its_top_probability():
    top1 = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))]      # softmax([2, 0]) and softmax([0, 1]) at their max
    top2 = [0.5, 1 / (1 + math.exp(-3))]
    w1 = [top1[i] / (top1[i] + top2[i]) for i in range(2)]
    expected = torch.tensor([[2 * w1[0], 0.0], [0.0, 1 * w1[1] + 3 * (1 - w1[1])]])
    assert torch.allclose(combine_logits(LOGITS, "confidence"), expected, atol=1e-6)
    assert torch.allclose(teacher_weights(LOGITS, "confidence").sum(0), torch.ones(2))


def test_most_confident_takes_one_teacher_per_example():
    # example 0: teacher 1 (0.88 against 0.5); example 1: teacher 2 (0.95 against 0.73)
    assert torch.equal(combine_logits(LOGITS, "most_confident"), torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    assert torch.equal(teacher_weights(LOGITS, "most_confident"), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("rule", ["mean", "confidence", "most_confident"])
@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_probabilities_average_the_distributions_at_the_kd_temperature(rule, t):
    """The students' softmax at T of the combined logits is the teachers' weighted mixture at T (not the geometric
    mean that averaging logits gives), the weights read at T too."""
    z = torch.tensor([[[8.0, 0.0, 0.0], [0.0, 1.0, 0.5]],
                      [[0.0, 1.0, 0.0], [0.0, 3.0, 2.0]],
                      [[0.5, 0.0, 0.2], [1.0, 0.0, 0.0]]])
    w = teacher_weights(z, rule, t)
    mixture = (w[..., None] * torch.softmax(z / t, -1)).sum(0)
    combined = combine_logits(z, rule, "probabilities", t)
    torch.testing.assert_close(torch.softmax(combined / t, -1), mixture)
    assert Combine(rule, "probabilities", t)(z).equal(combined)
    if rule == "mean" and t == 1.0:   # the confident first teacher dominates the mean of logits, not the mixture
        geometric = torch.softmax(combine_logits(z, rule, "logits", t) / t, -1)
        assert geometric[0, 0] > mixture[0, 0] + 0.05


def test_confidence_weights_are_read_at_the_kd_temperature():
    at_1, at_4 = teacher_weights(LOGITS, "confidence", 1.0), teacher_weights(LOGITS, "confidence", 4.0)
    assert not torch.allclose(at_1, at_4)
    soft = [torch.softmax(LOGITS[k] / 4.0, -1).amax(-1) for k in range(2)]
    torch.testing.assert_close(at_4[0], soft[0] / (soft[0] + soft[1]))


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="mean, confidence, most_confident"):
        combine_logits(LOGITS, "max")


def test_mean_maps_average_each_example_over_teachers():
    a = [torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 2, 2)]
    b = [torch.ones(1, 2, 3, 3), torch.ones(1, 2, 2, 2) * 3]
    out = mean_maps([a, b])
    assert torch.allclose(out[0], torch.full((1, 2, 3, 3), 0.5)) and torch.allclose(out[1], torch.full((1, 2, 2, 2), 2.0))


def test_batched_ensemble_combines_logits_and_renormalises_cnn_maps():
    def teacher(logits, act):
        return lambda batch: TeacherBatch(logits=logits.clone(), activation=[act.clone()])
    e = EnsembleBatches([teacher(LOGITS[0], torch.tensor([[1.0, 0.0]])), teacher(LOGITS[1], torch.tensor([[0.0, 1.0]]))],
                        Combine("mean"), "mean")
    out = e(None)
    assert torch.allclose(out.logits, combine_logits(LOGITS, "mean"))
    assert torch.allclose(out.activation[0], torch.tensor([[1.0, 1.0]]) / math.sqrt(2))


def test_the_ensembles_attention_scores_are_the_teachers_mean_with_attention_mean():
    """Scores before the softmax are averaged like the probabilities: per batch (images) and per example (text)."""
    from distill_core.modality.text.task import PrecomputedOutputs, TextTask
    from distill_core.teacher import TeacherOutputs

    def teacher(k):
        return lambda batch: TeacherBatch(logits=LOGITS[k].clone(), scores=torch.full((2, 1, 1, 3, 3), 2.0 * k))
    for attention, expected in (("mean", 1.0), ("teacher", 0.0)):
        out = EnsembleBatches([teacher(0), teacher(1)], Combine("mean"), attention)(None)
        assert torch.equal(out.scores, torch.full((2, 1, 1, 3, 3), expected))
        sources = [PrecomputedOutputs(TeacherOutputs(LOGITS[k], None, None, [torch.full((1, 1, 3, 3), 2.0 * k)]),
                                      torch.device("cpu")) for k in range(2)]
        ens = TextTask(SessionConfig()).ensemble_source(sources, Combine("mean"), attention)
        assert ens.attention is None and torch.equal(ens.scores[0], torch.full((1, 1, 3, 3), expected))


def test_parts_split_the_examples_without_overlap():
    halves = [part_indices(11, (k, 2)) for k in (1, 2)]
    assert sorted(halves[0] + halves[1]) == list(range(11)) and not set(halves[0]) & set(halves[1])
    assert part_indices(5, (1, 1)) == [0, 1, 2, 3, 4]
    assert halves[0] == part_indices(11, (1, 2))             # the same parts every time


# ---- settings ------------------------------------------------------------------------------------------------------
def test_naming_teachers_adds_a_variant_that_learns_from_all_of_them():
    cfg = SessionConfig.from_dict({"ensemble": {"teachers": [{"seed": 1}, {"finetune_part": "2/2"}]}})
    assert [(v.name, v.teacher) for v in cfg.variants] == [("baseline", "teacher"), ("distilled", "teacher"),
                                                           ("distilled_ensemble", "ensemble")]
    assert cfg.teacher_names == ["teacher", "teacher_2", "teacher_3"]
    assert cfg.teacher_configs[1].seed == 1 and cfg.teacher_configs[2].part == (2, 2)
    assert SessionConfig.from_dict(cfg.to_dict()) == cfg                      # saved and read back unchanged
    assert [v.name for v in SessionConfig().variants] == ["baseline", "distilled"]


@pytest.mark.parametrize("settings, message", [
    ({"ensemble": {"teachers": [{"seeds": 1}]}}, "unknown setting seeds in teacher 2 of ensemble.teachers"),
    ({"ensemble": {"teachers": [{"finetune_part": "3/2"}]}}, "k/n with 1 <= k <= n"),
    ({"ensemble": {"teachers": [{"seed": 0}]}}, "teacher 2 of ensemble.teachers is the same as teacher 1"),
    ({"ensemble": {"teachers": [{"seed": 1}], "combine": "max"}}, "ensemble.combine must be one of"),
    ({"ensemble": {"teachers": [{"seed": 1}], "attention": "teacher_2"}}, "ensemble.attention must be teacher"),
    ({"variants": [{"name": "a", "losses": {"logit_kd": 1}, "teacher": "ensemble"}]}, "the session has one teacher"),
    ({"variants": [{"name": "a", "losses": {"logit_kd": 1}, "teacher": "teacher_3"}],
      "ensemble": {"teachers": [{"seed": 1}]}}, "the session's teachers are teacher, teacher_2"),
    ({"variants": [{"name": "a", "losses": {"logit_kd": 1}, "teacher": "someone"}]}, "must be teacher, teacher_2"),
    ({"variants": [{"name": "a", "losses": {"logit_kd": 1}, "generated": True, "teacher": "teacher_2"}],
      "ensemble": {"teachers": [{"seed": 1}]}, "transfer": {"source": "unused"}}, "only the first teacher labels"),
    ({"variants": [{"name": "teacher_2", "losses": {"ce": 1}}]}, "is reserved"),
])
def test_bad_teacher_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(ConfigError, match=message):
        SessionConfig.from_dict(settings)


# ---- sessions ------------------------------------------------------------------------------------------------------
VARIANTS = [{"name": "baseline", "losses": {"ce": 1}},
            {"name": "kd", "losses": {"ce": .5, "logit_kd": .5, "attention_kl": 1}},
            {"name": "ens", "losses": {"ce": .5, "logit_kd": .5, "attention_kl": 1}, "teacher": "ensemble"},
            {"name": "second", "losses": {"ce": .5, "logit_kd": .5, "hidden_mse": 1}, "teacher": "teacher_2"}]


def ensemble_config(tiny_teacher, tiny_csv, **ensemble):
    d = tiny_config_dict(tiny_teacher, tiny_csv, variants=VARIANTS, objectives={"temperature": 2.0},
                         ensemble={"teachers": [{"seed": 1}, {"finetune_part": "2/2"}], **ensemble}, train__epochs=1)
    return SessionConfig.from_dict(d)


def test_the_ensemble_can_average_probabilities_at_the_kd_temperature(tmp_path, tiny_teacher, tiny_csv):
    cfg = ensemble_config(tiny_teacher, tiny_csv, average="probabilities")
    p = Session(cfg, RunStore(tmp_path).create(cfg.to_dict())).prepare()
    stacked = torch.stack([p.teacher_outputs.logits, p.sources["teacher_2"].logits, p.sources["teacher_3"].logits])
    ens = p.sources["ensemble"].logits
    torch.testing.assert_close(torch.softmax(ens / 2.0, -1), torch.softmax(stacked / 2.0, -1).mean(0))
    assert cfg.to_dict()["ensemble"]["average"] == "probabilities"                 # the run's config says so
    with pytest.raises(ConfigError, match="ensemble.average must be logits"):
        ensemble_config(tiny_teacher, tiny_csv, average="geometric")


def test_each_variant_learns_from_its_own_teacher(tmp_path, tiny_teacher, tiny_csv):
    cfg = ensemble_config(tiny_teacher, tiny_csv, combine="confidence", attention="mean")
    p = Session(cfg, RunStore(tmp_path).create(cfg.to_dict())).prepare()
    assert len(p.teachers) == 3 and p.teachers[2].fit["examples"] == 48       # half of the 96 training examples
    first, second, third = p.teacher_outputs, p.sources["teacher_2"], p.sources["teacher_3"]
    ens = p.sources["ensemble"]
    assert not torch.equal(first.logits, second.logits)                      # another seed, another teacher
    assert torch.allclose(ens.logits, combine_logits(torch.stack([first.logits, second.logits, third.logits]),
                                                     "confidence", "logits", 2.0))      # weights at the KD T
    assert torch.allclose(ens.attention[0].float(), (first.attention[0].float() + second.attention[0].float()
                                                     + third.attention[0].float()) / 3, atol=1e-3)
    assert second.hidden is not None and third.hidden is None               # teacher_3 only feeds the ensemble's logits
    assert first.hidden is None                     # only "second" reads hidden states, from teacher_2
    assert [v.teacher for v in p.variants] == ["teacher", "teacher", "ensemble", "teacher_2"]


def test_a_session_with_several_teachers_reports_each_and_their_ensemble(tmp_path, tiny_teacher, tiny_csv):
    store = RunStore(tmp_path)
    cfg = ensemble_config(tiny_teacher, tiny_csv)
    run = store.open(run_session(cfg, store))
    s = run.summary()
    assert s["status"] == "done", s["error"]
    assert [t["name"] for t in s["teachers"]] == ["teacher", "teacher_2", "teacher_3"]
    assert s["teachers"][0]["accuracy"] == s["accuracy"]["teacher"]
    assert s["ensemble"]["used_by"] == ["ens"] and s["ensemble"]["combine"] == "mean"
    assert len(s["ensemble"]["predictions"]) == s["test_size"]
    assert s["learns_from"] == {"baseline": "teacher", "kd": "teacher", "ens": "ensemble", "second": "teacher_2"}
    # the ensemble's student is paired with the same recipe learning from the first teacher; "second" has no twin
    assert set(s["twins"]) == {"ens"} and s["twins"]["ens"]["twin"] == "kd"
    assert s["twins"]["ens"]["accuracy"] == s["accuracy"]["ens"] and s["twins"]["ens"]["ref_accuracy"] == s["accuracy"]["kd"]
    assert {t["name"] for t in run.probe()["teachers"]} == {"teacher", "teacher_2", "teacher_3"}
    assert len(run.read_attention("teacher_2")) == len(run.read_attention("teacher"))
    assert any(n.startswith("teacher_3 (finetune part 2/2)") or n.startswith("teacher_3 (part 2/2)")
               for n in s["notices"])


def test_a_teacher_with_another_tokenizer_is_refused_before_training(tmp_path, tiny_teacher, tiny_csv):
    from transformers import BertTokenizerFast
    other = tmp_path / "other"
    other.mkdir()
    (other / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film"]))
    BertTokenizerFast(vocab_file=str(other / "vocab.txt")).save_pretrained(other)
    for name in ("config.json", "model.safetensors"):                         # the same model, another tokenizer
        (other / name).write_bytes((tiny_teacher / name).read_bytes())
    cfg = tiny_config_dict(tiny_teacher, tiny_csv, variants=VARIANTS[:3], objectives={"temperature": 2.0},
                           ensemble={"teachers": [{"source": str(other)}]})
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match="must share a tokenizer"):
        run_session(SessionConfig.from_dict(cfg), store)
    run = store.open(store.list()[0].run_id)
    assert run.summary()["status"] == "failed" and "teacher_2" in run.summary()["error"]
    assert run.probe() is None                                                # refused before any student was built


def test_a_teacher_trained_for_other_labels_is_refused(tmp_path, tiny_teacher, tiny_csv):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    other = tmp_path / "labelled"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, id2label={0: "positive", 1: "negative"},
                                                               label2id={"positive": 0, "negative": 1})
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_teacher).save_pretrained(other)
    cfg = tiny_config_dict(tiny_teacher, tiny_csv, variants=VARIANTS[:3], objectives={"temperature": 2.0},
                           ensemble={"teachers": [{"source": str(other), "finetune": "never"}]})
    with pytest.raises(ConfigError, match="trained for the labels positive, negative, but the data's labels are "
                                          "fresh, rotten"):
        run_session(SessionConfig.from_dict(cfg), RunStore(tmp_path / "runs"))


# ---- the pages -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, tiny_teacher, tiny_csv):
    """(store, run_id) of a finished session with three teachers, written by the real engine with tiny models."""
    store = RunStore(tmp_path_factory.mktemp("ensemble_runs"))
    return store, run_session(ensemble_config(tiny_teacher, tiny_csv), store)


@pytest.fixture
def ensemble_pages(ensemble_run, monkeypatch):
    monkeypatch.setenv("ADS_RUNS_DIR", str(ensemble_run[0].root))
    return ensemble_run[0].open(ensemble_run[1])


def test_accuracy_page_shows_every_teacher_and_their_ensemble(ensemble_pages):
    from app_helpers import VIEWS, open_page, texts
    s = ensemble_pages.summary()
    at = open_page(VIEWS / "accuracy.py")
    df = at.dataframe[0].value
    assert list(df["model"])[:4] == ["teacher", "teacher_2 (seed 1)", "teacher_3 (part 2/2 of the data)",
                                     "ensemble of 3 teachers (mean of logits)"]
    expected = [s["teachers"][0]["accuracy"], s["teachers"][1]["accuracy"], s["teachers"][2]["accuracy"],
                s["ensemble"]["accuracy"]]
    assert list(df["accuracy (%)"])[:4] == pytest.approx([100 * a for a in expected])
    assert len(df) == 4 + 4                                               # and the four variants
    shown = texts(at.markdown)
    assert "The **ensemble** of the 3 teachers (the mean of their logits)" in shown
    twin = s["twins"]["ens"]
    assert "**ens** learns from the ensemble" in shown and f"{100 * twin['diff']:+.1f} points" in shown


def test_explorer_shows_the_chosen_teachers_attention(ensemble_pages):
    import numpy as np

    from app_helpers import VIEWS, figures, open_page, run_app, values
    probe = ensemble_pages.probe()
    at = open_page(VIEWS / "explorer.py")
    radio = at.radio(key="explorer.teacher")
    assert radio.options == ["teacher", "teacher_2", "teacher_3"]
    at.radio(key="explorer.student").set_value("ens")
    run_app(at)
    assert at.radio(key="explorer.teacher").value == "teacher"             # whom ens's attention learns from
    at.radio(key="explorer.teacher").set_value("teacher_2")
    run_app(at)
    t_layer = at.selectbox(key="explorer.teacher_layer").value
    shown = values(figures(at)["explorer.triptych"]["data"][0]["z"])
    stored = ensemble_pages.read_attention("teacher_2")[0][t_layer]        # (Ht, T, T), grouped as compared
    from distill_core.analysis import teacher_view
    head = at.selectbox(key="explorer.head").value
    np.testing.assert_allclose(shown, teacher_view(stored, probe["head_rule"], probe["student_heads"], max(head, 0))
                               if head >= 0 else stored.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(shown, ensemble_pages.read_attention("teacher")[0][t_layer].mean(0))


# ---- images --------------------------------------------------------------------------------------------------------
IMAGE_VARIANTS = [{"name": "baseline", "losses": {"ce": 1}},
                  {"name": "at", "losses": {"ce": 1, "attention_transfer": 100}},
                  {"name": "kd_both", "losses": {"ce": .5, "logit_kd": .5, "attention_transfer": 100},
                   "teacher": "ensemble"}]


def test_an_image_student_learns_from_a_cnn_and_a_vit_teacher(tmp_path):
    from conftest import tiny_image_config_dict
    cfg = SessionConfig.from_dict(tiny_image_config_dict(
        "cnn", variants=IMAGE_VARIANTS, ensemble={"teachers": [{"source": "vit"}], "combine": "most_confident"},
        train={"epochs": 1, "batch_size": 32, "lr": 2e-3, "seed": 0, "device": "cpu", "min_steps": 0}))
    session = Session(cfg, RunStore(tmp_path).create(cfg.to_dict()))
    p = session.prepare()
    assert [type(t.model).__name__ for t in p.teachers] == ["ResidualCNN", "ViTForImageClassification"]
    batch = p.modality.batch("train", list(range(8)), p.device)
    first, second = p.teacher_outputs(batch), p.sources["teacher_2"](batch)
    ens = p.sources["ensemble"](batch)
    assert torch.allclose(ens.logits, combine_logits(torch.stack([first.logits, second.logits]), "most_confident"))
    assert [a.shape for a in ens.activation] == [a.shape for a in first.activation]   # the CNN teacher's maps
    assert second.activation is None and second.attention is None                      # the ViT gives logits only
    store = RunStore(tmp_path / "runs")
    summary = store.open(run_session(cfg, store)).summary()
    assert summary["status"] == "done" and [t["name"] for t in summary["teachers"]] == ["teacher", "teacher_2"]
    assert summary["ensemble"]["used_by"] == ["kd_both"]


def test_mean_attention_of_a_vit_and_a_cnn_teacher_is_refused_for_a_cnn_student(tmp_path):
    from conftest import tiny_image_config_dict
    cfg = SessionConfig.from_dict(tiny_image_config_dict(
        "cnn", variants=IMAGE_VARIANTS, ensemble={"teachers": [{"source": "vit"}], "attention": "mean"}))
    with pytest.raises(ConfigError, match="teacher_2 is a ViT whose maps the CNN student cannot be compared with"):
        Session(cfg, RunStore(tmp_path).create(cfg.to_dict())).prepare()


def test_a_sweep_reports_the_further_teachers_and_the_ensemble(ensemble_run):
    from distill_core.sweep import format_summary, summarize_sweep
    store, run_id = ensemble_run
    s = store.open(run_id).summary()
    out = summarize_sweep(store, {"id": "s", "seeds": [0], "runs": {"0": run_id}})
    assert out["teachers"]["teacher_2"]["accuracy"] == [s["teachers"][1]["accuracy"]]
    assert out["teachers"]["ensemble"]["mean"] == pytest.approx(s["ensemble"]["accuracy"])
    assert "  ensemble " in format_summary(out)


def test_the_sweep_table_lists_the_further_teachers_and_the_ensemble(ensemble_run):
    from app.run_list import sweep_stat_rows
    from distill_core.sweep import summarize_sweep
    store, run_id = ensemble_run
    rows = sweep_stat_rows(summarize_sweep(store, {"id": "s", "seeds": [0], "runs": {"0": run_id}}))
    assert [r["model"] for r in rows][:4] == ["teacher", "teacher_2", "teacher_3", "ensemble"]


def test_show_prints_every_teacher_and_the_ensemble(ensemble_run, capsys):
    from distill_core.__main__ import main
    store, run_id = ensemble_run
    s = store.open(run_id).summary()
    assert main(["show", run_id, "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "seed 1" in next(x for x in out.splitlines() if x.strip().startswith("teacher_2 "))
    assert "part 2/2" in next(x for x in out.splitlines() if x.strip().startswith("teacher_3 "))
    line = next(x for x in out.splitlines() if x.strip().startswith("ensemble "))
    assert f"{100 * s['ensemble']['accuracy']:.1f}%" in line and "3 teachers, mean of logits; learnt from by ens" in line
    assert "ens vs kd (the same recipe from the first teacher)" in out


def test_twins_are_found_by_recipe_and_computed_for_runs_that_lack_them(ensemble_run):
    from app.figures.teachers import with_twins
    from distill_core.ensemble import twin_of
    store, run_id = ensemble_run
    run = store.open(run_id)
    cfg = SessionConfig.from_dict(run.config())
    assert twin_of(cfg.variants, "ens") == "kd" and twin_of(cfg.variants, "second") is None
    assert twin_of(cfg.variants, "kd") is None                                # it learns from the first teacher
    s = run.summary()
    older = {k: v for k, v in s.items() if k not in ("twins", "learns_from")}  # a run written before they were kept
    assert with_twins(older, run.config(), run.predictions())["twins"] == s["twins"]
    assert with_twins(s, run.config(), run.predictions()) is s
