"""The Compare runs page, driven with Streamlit's AppTest on copies of runs the real engine wrote (`finished_run`,
`four_variant_run`, and one wider student trained here), side A against side B."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.figures import compare as fig_compare
from app.figures import divergence as fig_divergence
from app_helpers import VIEWS, figures, open_page, run_app, texts, values
from conftest import tiny_config_dict
from distill_core import RunStore
from distill_core.analysis import teacher_heads_for
from distill_core.verdicts import divergence_difference_reading

PAGE = VIEWS / "compare.py"
TIMEOUT = 90
K = "compare."


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("ADS_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, tiny_teacher, tiny_csv):
    """(store, run_id) of a 1-epoch session whose student has 3 layers of 4 heads (the others: 2 of 2)."""
    from distill_core import SessionConfig, run_session
    store = RunStore(tmp_path_factory.mktemp("wide"))
    cfg = tiny_config_dict(tiny_teacher, tiny_csv, name="wide",
                           student={"layers": 3, "heads": 4, "hidden": 16, "intermediate": 32, "init": "random"},
                           train__epochs=1)
    return store, run_session(SessionConfig.from_dict(cfg), store)


def copy_run(fixture_run, store: RunStore, new_id: str) -> str:
    """A copy of a session-scoped run in `store`, so the original stays intact."""
    src, run_id = fixture_run
    shutil.copytree(src.root / run_id, store.root / new_id)
    return new_id


def page() -> AppTest:
    return open_page(PAGE, default_timeout=TIMEOUT)


def choose(at: AppTest, **values) -> AppTest:
    for name, value in values.items():
        at.selectbox(key=K + name).set_value(value)
    return run_app(at)


def chosen(at: AppTest, *names: str) -> tuple:
    return tuple(at.selectbox(key=K + n).value for n in names)


def drawn(at: AppTest, key: str = K + "maps") -> list[np.ndarray]:
    return [values(d["z"]) for d in figures(at)[key]["data"]]


def student_map(run, variant: str, epoch: int, example: int, layer: int, head: int) -> np.ndarray:
    maps = run.read_attention(f"{variant}_e{epoch}")[example][layer]
    return maps.mean(0) if head == -1 else maps[head]


def teacher_map(run, example: int, layer: int, head: int) -> np.ndarray:
    """The teacher's map for a student layer and head: its mapped teacher layer, the heads the rule compares."""
    probe = run.probe()
    t_layer = {s: t for t, s in probe["pairs"]}[layer]
    ht, hs, rule = probe["teacher_heads"], probe["student_heads"], probe["head_rule"]
    heads = list(range(ht)) if head == -1 or rule == "mean" else teacher_heads_for(head, rule, ht, hs)
    return run.read_attention("teacher")[example][t_layer][heads].mean(0)


def recorded(run, variant: str, epoch: int, metric: str) -> np.ndarray:
    """The metric per mapped pair and compared head, read straight from metrics.jsonl."""
    for line in (run.path / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["student"] == variant and rec["epoch"] == epoch:
            return np.asarray(rec["attention"][metric], dtype=np.float64)
    raise AssertionError(f"no record of {variant} at epoch {epoch}")


def close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---- two variants of one run -------------------------------------------------------------------------
def test_two_variants_of_one_run_side_by_side_with_the_teacher(four_variant_run, store):
    run = store.open(copy_run(four_variant_run, store, "four"))
    at = page()
    # A: the first distilled variant, B: the labels-only reference of the same run, both at their last epoch
    assert chosen(at, "a_run", "a_variant", "a_epoch", "b_run", "b_variant", "b_epoch") == \
        ("four", "kd", 2, "four", "baseline", 2)
    s0 = run.probe()["pairs"][0][1]
    assert chosen(at, "example", "layer", "head") == (0, s0, -1)
    teacher, a_map, b_map, diff = drawn(at)
    close(teacher, teacher_map(run, 0, s0, -1))
    close(a_map, student_map(run, "kd", 2, 0, s0, -1))
    close(b_map, student_map(run, "baseline", 2, 0, s0, -1))
    close(diff, a_map - b_map)
    assert not np.allclose(a_map, b_map)                      # two trained variants attend differently
    names = [d["name"] for d in figures(at)[K + "maps"]["data"]]
    assert names[1].startswith("A: kd") and names[2].startswith("B: baseline") and names[3] == "A − B"

    choose(at, example=2, layer=1, head=1, a_variant="kd_att_mse", b_epoch=0)
    teacher, a_map, b_map, diff = drawn(at)
    close(teacher, teacher_map(run, 2, 1, 1))
    close(a_map, student_map(run, "kd_att_mse", 2, 2, 1, 1))
    close(b_map, student_map(run, "baseline", 0, 2, 1, 1))
    close(diff, a_map - b_map)
    assert "run-level curves" in texts(at.caption)           # one run: no run-against-run section
    assert K + "run_divergence" not in figures(at)


def test_the_grid_is_a_minus_b_of_the_recorded_metric(four_variant_run, store):
    run = store.open(copy_run(four_variant_run, store, "four"))
    at = page()
    choose(at, a_variant="kd_att_mse", a_epoch=2, b_variant="kd", b_epoch=1, metric="kl")
    grid = figures(at)[K + "grid"]["data"][0]
    expected = recorded(run, "kd_att_mse", 2, "kl") - recorded(run, "kd", 1, "kl")
    close(values(grid["z"]), expected)
    assert grid["y"] == fig_divergence.pair_labels(run.probe()["pairs"])
    who = np.asarray(grid["customdata"])
    assert (who == "A closer").sum() == (expected < 0).sum()      # lower KL is closer
    assert f"A is closer to the teacher on {(expected < 0).sum()} of {expected.size} compared heads" in texts(at.info)

    choose(at, metric="cosine")                                  # higher is closer: the colours follow
    grid = figures(at)[K + "grid"]["data"][0]
    expected = recorded(run, "kd_att_mse", 2, "cosine") - recorded(run, "kd", 1, "cosine")
    close(values(grid["z"]), expected)
    who = np.asarray(grid["customdata"])
    assert np.array_equal(who == "A closer", expected > 0) and np.array_equal(who == "B closer", expected < 0)

    choose(at, a_epoch=0, b_epoch=0)                             # every variant starts from the same weights
    assert "exactly as close to the teacher on all" in texts(at.info)
    assert not values(figures(at)[K + "grid"]["data"][0]["z"]).any()


def test_the_same_student_at_the_same_epoch_is_refused(four_variant_run, store):
    copy_run(four_variant_run, store, "four")
    at = page()
    choose(at, b_variant="kd")
    assert "same student at the same epoch" in texts(at.warning)
    assert not figures(at)
    choose(at, b_epoch=0)                                        # one variant before and after training
    assert not at.warning and K + "maps" in figures(at)


# ---- two runs ----------------------------------------------------------------------------------------
def test_two_runs_compare_map_by_map_head_by_head_and_run_by_run(finished_run, four_variant_run, store):
    two = store.open(copy_run(finished_run, store, "run-two"))
    four = store.open(copy_run(four_variant_run, store, "run-four"))
    at = page()
    choose(at, a_run="run-four", b_run="run-two")
    choose(at, b_variant="distilled")
    assert chosen(at, "a_variant", "a_epoch", "b_epoch") == ("kd", 2, 2)
    s0 = four.probe()["pairs"][0][1]
    maps = drawn(at)
    close(maps[0], teacher_map(four, 0, s0, -1))
    a_map, b_map, diff = maps[-3:]
    close(a_map, student_map(four, "kd", 2, 0, s0, -1))
    close(b_map, student_map(two, "distilled", 2, 0, s0, -1))
    close(diff, a_map - b_map)
    close(values(figures(at)[K + "grid"]["data"][0]["z"]),
          recorded(four, "kd", 2, "js") - recorded(two, "distilled", 2, "js"))

    div = {t["name"]: t for t in figures(at)[K + "run_divergence"]["data"]}
    assert set(div) == {f"A {v}" for v in four.summary()["variants"]} | {"B baseline", "B distilled"}
    assert div["B distilled"]["y"] == two.summary()["divergence"]["distilled"]
    assert div["A kd"]["y"] == four.summary()["divergence"]["kd"]
    settings = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert {"name", "variants.kd.losses", "variants.distilled.losses"} <= set(settings["setting"])
    assert "train.lr" not in set(settings["setting"])


def test_two_runs_overlay_their_curves_and_accuracies(finished_run, store):
    a = copy_run(finished_run, store, "run-a")
    b = copy_run(finished_run, store, "run-b")
    rb = store.open(b)
    cfg = rb.config()
    cfg["name"], cfg["train"]["lr"] = "second", 0.002
    rb.write_json("config.json", cfg)
    summary_b = rb.summary()
    summary_b["accuracy"]["distilled"] = 0.5
    summary_b["divergence"]["distilled"] = [0.3 for _ in summary_b["divergence"]["epochs"]]
    rb.write_json("summary.json", summary_b)
    at = page()
    choose(at, a_run=a, b_run=b)
    choose(at, b_variant="distilled")
    charts_ = figures(at)
    div = {t["name"]: t for t in charts_[K + "run_divergence"]["data"]}
    assert set(div) == {"A distilled", "A baseline", "B distilled", "B baseline"}
    assert div["B distilled"]["y"] == summary_b["divergence"]["distilled"]
    assert div["A distilled"]["y"] == store.open(a).summary()["divergence"]["distilled"]
    bars = {t["name"]: t for t in charts_[K + "run_accuracy"]["data"]}
    assert bars["B"]["y"][bars["B"]["x"].index("distilled")] == 50.0
    assert div["A distilled"]["line"]["dash"] == "solid" and div["B distilled"]["line"]["dash"] == "dot"
    assert div["A distilled"]["line"]["color"] == div["B distilled"]["line"]["color"]
    settings = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert set(settings["setting"]) == {"name", "train.lr"}
    # copies of one run: the same maps and records, so every head is level
    assert not np.any(drawn(at)[-1])
    assert "exactly as close" in texts(at.info)


def test_probe_sets_that_differ(finished_run, store):
    a = copy_run(finished_run, store, "run-a")
    b = copy_run(finished_run, store, "run-b")
    rb = store.open(b)
    probe = rb.probe()
    probe["texts"][0] = "a text only run b holds"
    rb.write_json("probe.json", probe)
    at = page()
    choose(at, a_run=a, b_run=b)
    assert list(at.selectbox(key=K + "example").options)[0].startswith("#1 ")     # only the shared texts
    assert "probe sets differ" in texts(at.caption)

    probe["texts"] = [f"other text {i}" for i in range(len(probe["texts"]))]
    rb.write_json("probe.json", probe)
    at = page()
    choose(at, a_run=a, b_run=b)
    choose(at, example=1)
    assert "share no text" in texts(at.warning)
    f = figures(at)
    assert K + "maps" not in f and {K + "maps_a", K + "maps_b"} <= set(f)      # each side alone, no difference
    ra = store.open(a)
    close(values(f[K + "maps_a"]["data"][-1]["z"]), student_map(ra, "distilled", 2, 1, 0, -1))
    close(values(f[K + "maps_b"]["data"][-1]["z"]), student_map(rb, "baseline", 2, 1, 0, -1))


def test_students_of_different_shapes_get_their_own_pickers(finished_run, wide_run, store):
    two = store.open(copy_run(finished_run, store, "run-two"))
    wide = store.open(copy_run(wide_run, store, "run-wide"))
    at = page()
    choose(at, b_run="run-two")             # B's run changes: the same variant as A's, at its last epoch
    assert chosen(at, "a_run", "a_variant", "a_epoch", "b_run", "b_variant", "b_epoch") == \
        ("run-wide", "distilled", 1, "run-two", "distilled", 2)
    assert list(at.selectbox(key=K + "head").options)[1:] == [f"head {h}" for h in range(4)]
    assert list(at.selectbox(key=K + "b_head").options)[1:] == [f"head {h}" for h in range(2)]
    choose(at, layer=2, head=3, b_layer=1, b_head=0)
    a_map, b_map, diff = drawn(at)[-3:]
    close(a_map, student_map(wide, "distilled", 1, 0, 2, 3))
    close(b_map, student_map(two, "distilled", 2, 0, 1, 0))
    close(diff, a_map - b_map)
    assert "cannot be subtracted head by head" in texts(at.info)
    assert K + "grid" not in figures(at)


# ---- deleted runs and too little to compare ----------------------------------------------------------
def test_deleting_run_a_leaves_two_different_choices(finished_run, store):
    copy_run(finished_run, store, "run-a")
    copy_run(finished_run, store, "run-b")
    at = page()
    choose(at, a_run="run-a", b_run="run-b")
    choose(at, a_variant="distilled", b_variant="distilled")
    assert not at.warning
    shutil.rmtree(store.root / "run-a")
    run_app(at)
    assert list(at.selectbox(key=K + "a_run").options) == ["run-b (2 variants)"]
    a_side = chosen(at, "a_run", "a_variant")
    b_side = chosen(at, "b_run", "b_variant")
    assert a_side == ("run-b", "distilled") and b_side == ("run-b", "baseline")
    assert not at.warning and K + "maps" in figures(at)

    shutil.rmtree(store.root / "run-b")
    run_app(at)
    assert "Comparing needs two students" in texts(at.info) and not at.selectbox


def test_deleting_run_b_leaves_two_different_choices(finished_run, store):
    copy_run(finished_run, store, "run-a")
    copy_run(finished_run, store, "run-b")
    at = page()
    choose(at, a_run="run-a", b_run="run-b")
    choose(at, a_variant="distilled", b_variant="distilled")
    shutil.rmtree(store.root / "run-b")
    run_app(at)
    assert chosen(at, "a_run", "a_variant", "b_run", "b_variant") == ("run-a", "distilled", "run-a", "baseline")
    assert not at.warning


def test_fewer_than_two_students_say_so(store):
    at = page()
    assert "Comparing needs two students" in texts(at.info) and "holds 0" in texts(at.info)
    assert not at.selectbox


def test_the_app_lists_the_page_and_the_runs_page_links_to_it(finished_run, store):
    copy_run(finished_run, store, "run-a")
    at = AppTest.from_file(str(VIEWS.parent / "streamlit_app.py"), default_timeout=TIMEOUT)
    run_app(at)
    at.switch_page("views/runs.py")
    run_app(at)
    assert [link.proto.page for link in at.page_link] == ["compare"]
    at.switch_page("views/compare.py")
    run_app(at)
    assert chosen(at, "a_run", "a_variant", "b_run", "b_variant") == ("run-a", "distilled", "run-a", "baseline")
    assert K + "maps" in figures(at)


# ---- the figures' words ------------------------------------------------------------------------------
def test_the_reading_names_the_closer_side_and_the_largest_gap():
    rows = ["teacher L1 → student L0", "teacher L3 → student L1"]
    diff = np.array([[-0.01, 0.002], [0.0, -0.03]])
    text = divergence_difference_reading(diff, rows, "js")
    assert text.startswith("A is closer to the teacher on 2 of 4 compared heads, B on 1, 1 level")
    assert "largest gap is teacher L3 → student L1, head 1, where A is closer by 0.03" in text
    text = divergence_difference_reading(diff, rows, "cosine")    # higher is closer
    assert text.startswith("A is closer to the teacher on 1 of 4 compared heads, B on 2")
    assert "where B is closer by 0.03" in text
    fig = fig_compare.divergence_difference_grid(diff, rows, "js")
    assert fig.data[0].zmin == -0.03 and fig.data[0].zmax == 0.03                # centred at 0
    assert fig.data[0].colorscale[0][1] == "rgb(5,48,97)"                        # blue (A closer) at the low end
