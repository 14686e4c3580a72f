"""The figure of the loss weights and KD temperature each variant trained with (weights_and_temperature in
app/figures/curves.py), from synthetic train_steps.jsonl records."""
from __future__ import annotations

from app.figures import base as fig_base
from app.figures import curves as fig_curves
from distill_core.vocab import variant_colors

VARIANTS = ["baseline", "kd", "kd_sched"]


def records(changing: bool = True, temperature: bool = False, new_keys: bool = True) -> list[dict]:
    """Two epochs of four records per variant; kd_sched's attention_kl weight rises when `changing`."""
    out = []
    for step in range(8):
        epoch = (step + 1) / 4
        for v in VARIANTS:
            r = {"step": step * 10, "epoch": epoch, "student": v, "losses": {"ce": 0.7 - 0.01 * step}}
            if new_keys:
                if v == "baseline":
                    r["weights"] = {"ce": 1.0}
                else:
                    ramp = step / 7 if changing and v == "kd_sched" else 1.0
                    r["weights"] = {"ce": 0.5, "logit_kd": 0.5, "attention_kl": 0.1 * ramp}
                r["temperature"] = 1.0 + 3 * step / 7 if temperature and v == "kd" else 2.0
            out.append(r)
    return out


def test_a_changing_weight_gets_its_panel_and_a_line_per_changing_variant():
    fig = fig_curves.weights_and_temperature(records(), VARIANTS, reference="baseline", epochs=2)
    assert fig is not None
    assert fig.layout.title.text == "Loss weights and temperature actually used"
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["<b>weight of attention KL</b>"]                 # only the weight that changes
    (line,) = fig.data                                                  # only the variant whose weight changes
    assert line.meta == {"panel": "attention_kl", "student": "kd_sched"}
    assert line.line.color == variant_colors(VARIANTS)["kd_sched"] and line.line.dash == "solid"
    assert list(line.x) == [(s + 1) / 4 for s in range(8)]
    assert line.y[0] == 0 and abs(line.y[-1] - 0.1) < 1e-12
    assert list(fig.layout.xaxis.range) == [0, 2]


def test_a_changing_temperature_adds_its_panel_last():
    fig = fig_curves.weights_and_temperature(records(temperature=True), VARIANTS, reference="baseline")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["<b>weight of attention KL</b>", "<b>KD temperature</b>"]
    panels = {(t.meta["panel"], t.meta["student"]) for t in fig.data}
    # kd changes only its temperature and kd_sched only a weight: each is drawn in every panel it has a value for
    assert panels == {("attention_kl", "kd_sched"), ("attention_kl", "kd"), ("temperature", "kd"),
                      ("temperature", "kd_sched")}
    assert sum(t.showlegend for t in fig.data) == 2                     # one legend entry per variant
    temps = next(t for t in fig.data if t.meta == {"panel": "temperature", "student": "kd"})
    assert temps.y[0] == 1.0 and temps.y[-1] == 4.0


def test_the_reference_is_dashed():
    recs = [dict(r, weights={"ce": 1.0 - 0.1 * i}) if r["student"] == "baseline" else r
            for i, r in enumerate(records(changing=False))]
    fig = fig_curves.weights_and_temperature(recs, VARIANTS, reference="baseline")
    (line,) = fig.data
    assert line.meta["student"] == "baseline" and line.line.dash == fig_base.REFERENCE_DASH


def test_constant_weights_and_temperature_give_no_figure():
    assert fig_curves.weights_and_temperature(records(changing=False), VARIANTS, reference="baseline") is None


def test_records_without_weights_or_temperature_give_no_figure():
    assert fig_curves.weights_and_temperature(records(new_keys=False), VARIANTS) is None
    assert fig_curves.weights_and_temperature([], VARIANTS) is None


# ---- the Divergence page draws it under the divergence curves, for a run written by hand (nothing trains) --------
def write_run(root, steps: list[dict]):
    import numpy as np

    from distill_core import RunStore, SessionConfig
    cfg = SessionConfig.from_dict({"variants": [{"name": v, "losses": {"ce": 1.0}} for v in VARIANTS],
                                   "train": {"epochs": 2}})
    run = RunStore(root).create(cfg.to_dict(), run_id="hand-written", status="done")
    run.write_json("probe.json", {"pairs": [[1, 0], [3, 1]], "variants": VARIANTS, "reference": "baseline",
                                  "head_rule": "direct", "student_heads": 2, "teacher_heads": 2})
    rng = np.random.default_rng(0)
    for epoch in range(3):
        for v in VARIANTS:
            att = {m: rng.random((2, 2)).tolist() for m in ("kl", "js", "mse", "cosine")}
            run.append_metrics({"epoch": epoch, "student": v, "train_loss": {}, "val_accuracy": 0.5,
                                "attention": att, "js_mean": float(np.mean(att["js"]))})
    run.append_train_steps(steps)
    return run


def divergence_page(tmp_path, monkeypatch, steps):
    from app_helpers import VIEWS, figures, open_page, texts
    write_run(tmp_path / "runs", steps)
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    at = open_page(VIEWS / "divergence.py", default_timeout=60)
    return figures(at), texts(at.caption)


def test_divergence_page_shows_the_weights_that_changed(tmp_path, monkeypatch):
    figs, captions = divergence_page(tmp_path, monkeypatch, records())
    fig = figs["divergence.weights"]
    assert [t["meta"]["student"] for t in fig["data"]] == ["kd_sched"]
    assert "The weight each loss had at each step" in captions


def test_divergence_page_shows_nothing_for_a_plain_run(tmp_path, monkeypatch):
    figs, captions = divergence_page(tmp_path, monkeypatch, records(changing=False))
    assert "divergence.curves" in figs and "divergence.weights" not in figs
    assert "The weight each loss had at each step" not in captions


def test_the_live_curves_show_it_under_the_losses(tmp_path, monkeypatch):
    from app_helpers import VIEWS, figures, open_page
    write_run(tmp_path / "runs", records(temperature=True))
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ADS_FORM_DEFAULTS", raising=False)
    at = open_page(VIEWS / "new_session.py", {"run": "hand-written"}, default_timeout=60)
    keys = list(figures(at))
    assert keys[-2:] == ["new.final.loss", "new.final.weights"]
    assert len(figures(at)["new.final.weights"]["layout"]["annotations"]) == 2     # attention_kl, temperature
