"""Adaptive distillation: schedules, automatic weights, temperature, attention focus, and what the step records."""
import math

import pytest
import torch

from distill_core.strategies import schedules
from distill_core.strategies.adaptive import AttentionFocus, LossWeights, Temperature
from distill_core.session.variant import LossWindow


@pytest.mark.parametrize("spec,step,expected", [
    ("constant", 57, 1.0),
    ("linear_up", 0, 0.0), ("linear_up", 50, 0.5), ("linear_up", 100, 1.0),
    ("linear_down", 0, 1.0), ("linear_down", 25, 0.75), ("linear_down", 100, 0.0),
    ("cosine_up", 50, 0.5), ("cosine_down", 0, 1.0), ("cosine_down", 100, 0.0),
    ("step@2", 24, 0.0), ("step@2", 25, 1.0), ("step@3", 49, 0.0), ("step@3", 50, 1.0),
    ("until@2", 24, 1.0), ("until@2", 25, 0.0),
])
def test_schedule_values_at_chosen_steps(spec, step, expected):
    # 101 steps in all (0..100), 25 steps per epoch: epoch 2 starts at step 25
    assert schedules.multiplier(spec, step, 101, 25) == pytest.approx(expected, abs=1e-9)


def test_cosine_is_between_its_ends_and_smooth():
    values = [schedules.multiplier("cosine_up", s, 101, 25) for s in range(101)]
    assert values == sorted(values) and values[25] == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))


@pytest.mark.parametrize("spec", ["sideways", "step@", "step@0", "until@x", 3])
def test_bad_schedule_names_are_refused_with_the_known_ones(spec):
    problem = schedules.check_schedule(spec)
    assert problem and ("known" in problem or "whole number" in problem or "name like" in problem)


def test_tinybert_preset_trains_attention_first_then_the_outputs():
    got = schedules.preset_schedules("tinybert", {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}, epochs=4)
    assert got == {"ce": "step@3", "logit_kd": "step@3", "attention_kl": "until@3"}
    w = LossWeights({"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1}, {}, "tinybert", "none", 40, 10, 4)
    assert w.scheduled(5) == {"ce": 0.0, "logit_kd": 0.0, "attention_kl": 0.1}      # epoch 1
    assert w.scheduled(25) == {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.0}     # epoch 3


def test_scheduled_weight_is_the_configured_weight_times_the_multiplier():
    w = LossWeights({"ce": 0.5, "attention_kl": 0.2}, {"attention_kl": "linear_down"}, "", "none", 11, 5, 2)
    total, used = w.combine({"ce": torch.tensor(2.0), "attention_kl": torch.tensor(3.0)}, step=5)
    assert used == {"ce": 0.5, "attention_kl": pytest.approx(0.1)}
    assert float(total) == pytest.approx(0.5 * 2 + 0.1 * 3)


def test_magnitude_weighting_gives_the_larger_loss_the_smaller_weight():
    w = LossWeights({"ce": 1.0, "attention_kl": 1.0}, {}, "", "magnitude", 100, 10, 10)
    for step in range(30):
        _, used = w.combine({"ce": torch.tensor(0.5), "attention_kl": torch.tensor(2.0)}, step)
    assert used["attention_kl"] < 1.0 < used["ce"]
    # balanced: each weighted term has the same size
    assert used["ce"] * 0.5 == pytest.approx(used["attention_kl"] * 2.0, rel=1e-6)


def test_magnitude_weights_follow_the_running_size_of_losses_that_change():
    """Each loss's running size is an EMA (0.9) of its values, starting at its first value; the factor is the mean
    running size over the losses present divided by the loss's own. A jump of one loss moves its weight gradually."""
    from distill_core.strategies.adaptive import EMA
    w = LossWeights({"ce": 1.0, "attention_kl": 0.5}, {}, "", "magnitude", 100, 10, 10)
    kl_values = [0.5] * 4 + [5.0] * 6                       # the attention loss grows 10x at step 4
    running = {}
    for step, kl in enumerate(kl_values):
        values = {"ce": torch.tensor(2.0), "attention_kl": torch.tensor(kl)}
        total, used = w.combine(values, step)
        for k, v in values.items():                          # the documented running size, by hand
            running[k] = float(v) if k not in running else EMA * running[k] + (1 - EMA) * float(v)
        mean = (running["ce"] + running["attention_kl"]) / 2
        expected = {"ce": 1.0 * mean / running["ce"], "attention_kl": 0.5 * mean / running["attention_kl"]}
        assert used == pytest.approx(expected, rel=1e-6), step
        assert float(total) == pytest.approx(expected["ce"] * 2.0 + expected["attention_kl"] * kl, rel=1e-6)
    assert w.running == pytest.approx(running, rel=1e-6)
    # after the jump the running size lags the raw value, so the weight has not yet fallen to raw balance
    assert running["attention_kl"] < 5.0 and used["attention_kl"] > 0.5 * (2.0 + 5.0) / 2 / 5.0


def test_uncertainty_weights_move_toward_the_inverse_of_each_loss():
    """Kendall et al.: minimising exp(-s) L + s over s gives exp(-s) = 1 / L, so a large loss is trusted less."""
    w = LossWeights({"a": 1.0, "b": 1.0}, {}, "", "uncertainty", 100, 10, 10)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for step in range(400):
        total, used = w.combine({"a": torch.tensor(4.0), "b": torch.tensor(0.25)}, step)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert used["a"] == pytest.approx(0.25, rel=0.1) and used["b"] == pytest.approx(4.0, rel=0.1)


def test_temperature_schedule_runs_from_high_to_low_within_its_range():
    t = Temperature("linear_down", base=2.0, low=1.0, high=4.0, total_steps=11)
    assert [t.at(0), t.at(5), t.at(10)] == [pytest.approx(4.0), pytest.approx(2.5), pytest.approx(1.0)]
    assert Temperature("constant", 2.0, 1.0, 4.0, 11).at(7) == 2.0 and not Temperature("constant", 2, 1, 4, 11).changes


def test_curriculum_temperature_moves_against_the_student_and_stays_in_range():
    """CTKD: the learned temperature gets the reversed KD gradient, so it moves to make the KD loss larger."""
    from distill_core.objectives import LossInputs, logit_kd
    t = Temperature("curriculum", base=2.0, low=1.0, high=4.0, total_steps=100)
    student = torch.tensor([[2.0, 0.0, -1.0]])
    teacher = torch.tensor([[0.0, 3.0, 0.0]])

    def kd(temp):
        return logit_kd(LossInputs(student, torch.tensor([1]), torch.ones(1, 3), temp, teacher))
    before = float(kd(2.0))
    opt = torch.optim.SGD(t.parameters(), lr=0.5)
    for step in range(50, 90):                  # strength > 0.5 here
        opt.zero_grad()
        kd(t.at(step)).backward()
        opt.step()
        t.clamp_()
    after_t = float(t.value.detach())
    assert 1.0 <= after_t <= 4.0 and after_t != 2.0
    assert float(kd(after_t)) > before


def test_attention_focus_weights_the_heads_where_the_student_is_far():
    focus = AttentionFocus(pairs=2, heads=2)
    assert focus.weights("cpu") is None
    for _ in range(5):
        focus.update({"attention_kl": torch.tensor([[0.1, 0.1], [0.1, 0.7]])})
    w = focus.weights("cpu")
    assert w.shape == (2, 2) and float(w.mean()) == pytest.approx(1.0)
    assert float(w[1, 1]) > 1.0 > float(w[0, 0])


def test_attention_losses_with_equal_head_weights_match_the_unweighted_loss():
    from distill_core import objectives
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 2, 3, 5, 5, generator=g), -1)
    q = torch.softmax(torch.randn(2, 2, 3, 5, 5, generator=g), -1)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    base = dict(student_logits=torch.zeros(2, 2), labels=torch.tensor([0, 1]), mask=mask, teacher_attention=p,
                student_attention=q, teacher_scores=torch.log(p), student_scores=torch.log(q))
    for name in ("attention_kl", "attention_mse", "attention_score_mse"):
        plain = objectives.OBJECTIVES[name].fn(objectives.LossInputs(**base))
        inp = objectives.LossInputs(**base, head_weights=torch.ones(2, 3))
        assert float(objectives.OBJECTIVES[name].fn(inp)) == pytest.approx(float(plain), rel=1e-5)
        assert inp.head_losses[name].shape == (2, 3)
        heavy = torch.ones(2, 3)
        heavy[0, 0] = 3.0
        weighted = objectives.OBJECTIVES[name].fn(objectives.LossInputs(**base, head_weights=heavy))
        expected = float((inp.head_losses[name] * heavy).mean())
        assert float(weighted) == pytest.approx(expected, rel=1e-5)


def test_label_losses_are_left_out_without_labels():
    from distill_core import objectives
    inp = objectives.LossInputs(torch.zeros(2, 2), None, torch.ones(2, 3), 2.0, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    values = objectives.loss_values(["ce", "logit_kd"], inp)
    assert list(values) == ["logit_kd"]


def test_loss_window_records_the_weights_and_temperature_used():
    w = LossWindow()
    w.add({"kd": {"total": 1.0, "ce": 1.0}}, {"kd": {"weights": {"ce": 0.4}, "temperature": 2.0}})
    w.add({"kd": {"total": 3.0, "ce": 3.0}}, {"kd": {"weights": {"ce": 0.2}, "temperature": 4.0}})
    w.add({"gen": {"total": 1.0, "ce": 0.8}}, {"gen": {"weights": {"ce": 0.5}, "temperature": 2.0}})
    w.add({"gen": {"total": 2.0}}, {"gen": {"weights": {}, "temperature": 2.0}})     # a generated-data step: no ce
    recs = {r["student"]: r for r in w.flush(9, 10)}
    assert recs["kd"]["weights"] == {"ce": pytest.approx(0.3)} and recs["kd"]["temperature"] == pytest.approx(3.0)
    assert recs["kd"]["steps"] == 2 and recs["gen"]["steps"] == 2 and recs["gen"]["temperature"] == 2.0
    # each value is the mean over the steps it was present in
    assert recs["gen"]["losses"] == {"total": 1.5, "ce": 0.8} and recs["gen"]["weights"] == {"ce": 0.5}
    assert w.flush(10, 10) == []
