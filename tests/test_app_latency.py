"""Latency on the Accuracy and Compression pages: the conditions in a caption, a warning for figures taken under
load, "Measure again", and runs written before conditions were recorded. Copies of a run the real engine wrote."""
from __future__ import annotations

from app_helpers import VIEWS, open_page, run_app, texts
from distill_core import compress as C
from distill_core import latency as L

TIMEOUT = 60            # the buttons reload and time the tiny models

BUSY = {"threads": 1, "device": "cpu", "repeats": 50, "warmup": 5, "order": "interleaved", "examples": 4, "cpus": 2,
        "load_before": [6.1, 4.0, 3.0], "load_after": [6.3, 4.1, 3.0], "own_load": 1.0,
        "spread": {"teacher": 0.1, "baseline": 0.9, "distilled": 0.1}, "seconds": 2.0,
        "measured": "2026-12-06T10:00:00Z", "busy": True,
        "reasons": ["the machine's 1-minute load average was 6.3 on 2 cores, 5.3 more than this measurement "
                    "explains: less than one core was free for it"]}


def with_summary(run, **changes) -> dict:
    summary = {**run.summary(), **changes}
    for k in [k for k, v in changes.items() if v is None]:
        del summary[k]
    run.write_json("summary.json", summary)
    return summary


def accuracy_page():
    return open_page(VIEWS / "accuracy.py", timeout=TIMEOUT)


def test_accuracy_page_shows_the_conditions(run_copy):
    at = accuracy_page()
    conditions = run_copy.summary()["latency_conditions"]
    assert L.conditions_text(conditions) in texts(at.caption)
    assert "1 thread" in texts(at.caption) and "interleaved" in texts(at.caption)
    assert at.button(key="accuracy.measure_latency").label == "Measure again"


def test_accuracy_page_warns_about_figures_taken_under_load(run_copy):
    with_summary(run_copy, latency_conditions=BUSY)
    at = accuracy_page()
    warned = texts(at.warning)
    assert "taken under load" in warned and "load average was 6.3 on 2 cores" in warned
    assert "under load" in at.get("plotly_chart")[-1].proto.spec          # the latency panel's title says so


def test_an_old_run_without_conditions_still_shows_its_latency(run_copy):
    summary = with_summary(run_copy, latency_conditions=None)
    at = accuracy_page()
    assert L.NOT_RECORDED in texts(at.caption) and "taken under load" not in texts(at.warning)
    df = at.dataframe[0].value
    assert list(df["latency (ms)"]) == [summary["latency_ms"][m] for m in ("teacher", "baseline", "distilled")]


def test_measure_again_on_the_accuracy_page_writes_what_the_page_then_shows(run_copy):
    with_summary(run_copy, latency_conditions=BUSY)
    at = accuracy_page()
    at.button(key="accuracy.measure_latency").click()
    run_app(at, TIMEOUT)
    record = run_copy.read_json(L.FILE)
    assert record and record["conditions"]["measured"] != BUSY["measured"]
    assert L.conditions_text(record["conditions"]) in texts(at.caption)
    assert "measured again after the session" in texts(at.caption)
    df = at.dataframe[0].value
    assert list(df["latency (ms)"]) == [record["latency_ms"][m] for m in ("teacher", "baseline", "distilled")]
    assert "load average was 6.3" not in texts(at.warning)               # the old flag is gone


def test_compression_page_shows_conditions_warns_and_measures_again(run_copy):
    record = C.compress_run(run_copy, fractions=(0.0, 0.5))
    record["variants"]["distilled"]["latency_conditions"] = BUSY
    del record["variants"]["baseline"]["latency_conditions"]
    run_copy.write_json(C.FILE, record)
    at = open_page(VIEWS / "compression.py", timeout=TIMEOUT)
    assert "distilled student" in texts(at.warning) and "taken under load" in texts(at.warning)
    captions = texts(at.caption)
    assert L.conditions_text(BUSY) in captions and L.NOT_RECORDED in captions
    at.button(key="compression.measure_latency").click()
    run_app(at, TIMEOUT)
    again = C.read_compression(run_copy)
    for name in ("baseline", "distilled"):
        assert L.conditions_text(again["variants"][name]["latency_conditions"]) in texts(at.caption)
    assert L.NOT_RECORDED not in texts(at.caption)


def test_compression_record_without_any_conditions_still_renders(run_copy):
    record = C.compress_run(run_copy, fractions=(0.0,))
    for entry in record["variants"].values():
        del entry["latency_conditions"]
    run_copy.write_json(C.FILE, record)
    at = open_page(VIEWS / "compression.py", timeout=TIMEOUT)
    assert texts(at.caption).count(L.NOT_RECORDED) == 1
