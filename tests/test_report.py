"""One run as a self-contained HTML report (app/report.py), from the Runs page and `python -m app report`.

Built from runs the real engine wrote with tiny models (copied before anything is changed or written into them);
the browser test opens the file offline in the system's headless Chromium and checks that it asks for nothing."""
from __future__ import annotations

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import plotly.offline
import pytest

from app.figures import divergence as fig_divergence
from app.__main__ import main    # the report command is the app's: it draws with the app's figures
from app.report import AVERAGE, HeatmapChoice, ReportError, build_report, default_heatmaps, write_report
from app.tables import DISCORDANT, PAIRED_INTERVAL, vs_column
from app_helpers import open_page, texts
from distill_core import RunStore
from distill_core import latency as L
from distill_core.analysis import teacher_heads_for
from distill_core.errors import DistillError
from distill_core.metrics import map_metric
from distill_core.stats import binomial_halfwidth, p_text
from distill_core.verdicts import divergence_reading, paired_verdicts, verdict_lines
from distill_core.vocab import TEACHER, model_label

PLOTLY_JS = plotly.offline.get_plotlyjs()
REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
# What would make a browser fetch something: checked on the whole page except the embedded plotly.js
REMOTE = ('src="http', "src='http", 'href="http', "href='http", "url(http", "url('http", 'url("http', "@import",
          "cdn.", "<link", "<iframe", "<img")


# ---- reading the page back ----------------------------------------------------------------------------
BLOCKS = {"p", "li", "ul", "div", "td", "th", "tr", "table", "h1", "h2", "h3", "section", "header", "footer"}


class _Page(HTMLParser):
    """The page's visible text (scripts and styles left out) and its tables by id, as cell texts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tables, self._skip, self._table, self._row, self._cell = [], {}, 0, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag in BLOCKS:
            self.text.append(" ")
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in BLOCKS:
            self.text.append(" ")
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read_page(page: str) -> tuple[str, dict]:
    p = _Page()
    p.feed(page)
    return " ".join("".join(p.text).split()), p.tables


def rows_by_model(table: list[list[str]]) -> dict[str, dict[str, str]]:
    head, *rows = table
    return {r[0]: dict(zip(head, r)) for r in rows}


def without_plotly_js(page: str) -> str:
    """The page with its one embedded plotly.js removed (asserting it is there exactly once, unchanged)."""
    assert page.count(PLOTLY_JS) == 1
    return page.replace(PLOTLY_JS, "")


def assert_self_contained(page: str) -> None:
    """One plotly.js, in the head, unchanged; one inline script per figure and nothing that points elsewhere."""
    rest = without_plotly_js(page)
    head = page[:page.index("</head>")]
    assert PLOTLY_JS in head
    assert "Content-Security-Policy" in head and "default-src 'none'" in head
    assert len(re.findall(r"<script\b", page)) == 1 + page.count('class="figure"')
    assert not re.search(r"<script\b[^>]*\bsrc=", page)
    lower = rest.lower()
    for pattern in REMOTE:
        assert pattern not in lower, pattern
    assert not re.search(r"https?://", rest), re.search(r".{60}https?://.{60}", rest)


def copy_run(src_run, dst: Path, new_id: str | None = None) -> tuple[RunStore, str]:
    src, run_id = src_run
    store = RunStore(dst)
    shutil.copytree(src.root / run_id, store.root / (new_id or run_id))
    return store, new_id or run_id


def figure_specs(page: str) -> list[tuple[list, dict]]:
    """(data, layout) of every figure, read back from its Plotly.newPlot call."""
    out, decoder = [], json.JSONDecoder()
    rest = without_plotly_js(page)
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', rest):
        data, end = decoder.raw_decode(rest, m.end())
        layout, _ = decoder.raw_decode(rest, re.compile(r",\s*").match(rest, end).end())
        out.append((data, layout))
    return out


# ---- finished runs ------------------------------------------------------------------------------------
def check_accuracy_table(page: str, summary: dict) -> None:
    text, tables = read_page(page)
    rows = rows_by_model(tables["accuracy-table"])
    variants, ref = summary["variants"], summary["reference"]
    acc, n = summary["accuracy"], summary["test_size"]
    assert list(rows) == [model_label(m, ref) for m in (TEACHER, *variants)]
    vs = vs_column(ref)
    for m in (TEACHER, *variants):
        row = rows[model_label(m, ref)]
        assert row["accuracy (%)"] == f"{100 * acc[m]:.1f}"
        assert row["± 95% (points)"] == f"{100 * binomial_halfwidth(acc[m], n):.1f}"
        c = summary["paired"].get(m)
        if c is None:                                    # the teacher and the reference
            assert row[vs] == row["McNemar p"] == "–"
            continue
        assert row[vs] == f"{100 * c['diff']:+.1f}"
        assert row[PAIRED_INTERVAL] == f"{100 * c['lo']:+.1f} to {100 * c['hi']:+.1f}"
        assert row["McNemar p"] == p_text(c["p"]).removeprefix("p ").removeprefix("= ")
        assert row[DISCORDANT] == f"{c['variant_only']} / {c['ref_only']}"
    rows_v = paired_verdicts(summary["paired"], acc, variants, ref)
    for line in verdict_lines(rows_v, ref):                   # the verdicts, as the Accuracy page words them
        assert " ".join(line.replace("**", "").replace("`", "").split()) in text
    for w in summary["warnings"]:
        assert " ".join(w["message"].split()) in text
    eff = rows_by_model(tables["efficiency-table"])
    assert eff[model_label(TEACHER)]["params (M)"] == f"{summary['params'][TEACHER] / 1e6:.2f}"
    assert all(eff[model_label(v, ref)]["latency (ms)"] == f"{summary['latency_ms'][v]:.1f}" for v in variants)


def test_report_of_a_finished_run(finished_run, tmp_path):
    store, run_id = copy_run(finished_run, tmp_path / "runs")
    run = store.open(run_id)
    page = build_report(run)
    assert_self_contained(page)
    summary = run.summary()
    assert summary["variants"] == ["baseline", "distilled"] and summary["paired"]
    text, tables = read_page(page)
    assert f"Run {run_id}" in text
    for v in summary["variants"]:
        assert v in text
    check_accuracy_table(page, summary)
    settings = dict(tables["settings-table"][1:])
    assert settings["train.epochs"] == "2" and settings["data.max_length"] == "16"
    assert json.loads(settings["variants.distilled.losses"]) == run.config()["variants"][1]["losses"]
    figures = re.findall(r'data-figure="([^"]+)"', page)
    assert figures[:6] == ["accuracy_bars", "difference", "efficiency_bars", "validation", "divergence", "grid"]
    # default heatmaps: the first two probe examples, every variant but the reference, at the last mapped pair
    assert figures[6:] == ["heatmap 0 distilled", "heatmap 1 distilled"]
    probe = run.probe()
    last_layer = probe["pairs"][-1][1]
    assert default_heatmaps(run) == [HeatmapChoice(0, "distilled", last_layer), HeatmapChoice(1, "distilled",
                                                                                              last_layer)]
    tokens = "".join(f'<span class="tok">{html.escape(t)}</span>' for t in probe["tokens"][1])
    assert f"Tokens ({len(probe['tokens'][1])}): {tokens}" in page


def test_report_of_four_variants(four_variant_run, tmp_path):
    store, run_id = copy_run(four_variant_run, tmp_path / "runs")
    run = store.open(run_id)
    page = build_report(run)
    assert_self_contained(page)
    summary = run.summary()
    text, tables = read_page(page)
    assert run_id in text and "four variants" in text
    assert summary["variants"] == ["baseline", "kd", "kd_att_kl", "kd_att_mse"]
    assert all(v in text for v in summary["variants"])
    heatmaps = re.findall(r'data-figure="(heatmap [^"]+)"', page)            # the reference is left out
    assert heatmaps == [f"heatmap {i} {v}" for i in (0, 1) for v in ("kd", "kd_att_kl", "kd_att_mse")]
    check_accuracy_table(page, summary)
    # every variant's objectives, from the run's config
    rows = rows_by_model(tables["accuracy-table"])
    assert rows["kd_att_mse"]["objectives"] == "ce 0.5 + logit_kd 0.5 + attention_mse 1"
    # the layer x head grid is of the last epoch, and the reading of the curves is the Divergence page's
    assert "Layer × head at epoch 2" in text
    records = [r for r in run.metrics() if "attention" in r]
    labels = fig_divergence.pair_labels(run.probe()["pairs"])
    reading = divergence_reading(records, "js", labels, summary["variants"], "baseline")
    assert " ".join(reading.split()) in text


def test_a_chosen_heatmap_shows_that_layer_head_and_epoch(four_variant_run, tmp_path):
    store, run_id = copy_run(four_variant_run, tmp_path / "runs")
    run = store.open(run_id)
    probe = run.probe()
    choice = HeatmapChoice(example=1, variant="kd_att_kl", layer=0, head=1, epoch=0)
    page = build_report(run, [choice])
    assert re.findall(r'data-figure="(heatmap [^"]+)"', page) == ["heatmap 1 kd_att_kl"]
    t_layer = {s: t for t, s in probe["pairs"]}[0]
    heads = teacher_heads_for(1, probe["head_rule"], probe["teacher_heads"], probe["student_heads"])
    teacher = run.read_attention("teacher")[1][t_layer][heads].mean(0)
    student = run.read_attention("kd_att_kl_e0")[1][0][1]
    js = float(map_metric("js", teacher, student))
    text, _ = read_page(page)
    assert f"Example #1 · kd_att_kl · student layer 0 vs teacher layer {t_layer} · epoch 0" in text
    assert f"Jensen-Shannon between the two maps shown: {js:.4g}." in text
    other = float(map_metric("js", teacher, run.read_attention("kd_att_kl_e2")[1][0][1]))
    assert f"{other:.4g}" != f"{js:.4g}"                   # another epoch would have given another number
    # heads averaged on both sides, at the last epoch
    page = build_report(run, [HeatmapChoice(0, "kd", 1, AVERAGE)])
    teacher = run.read_attention("teacher")[0][probe["pairs"][-1][0]].mean(0)
    student = run.read_attention("kd_e2")[0][1].mean(0)
    assert f"between the two maps shown: {float(map_metric('js', teacher, student)):.4g}." in read_page(page)[0]
    assert "<h3>Example #" not in build_report(run, [])


@pytest.mark.parametrize("choice, fix", [
    (HeatmapChoice(example=4, variant="kd", layer=1), "choose one of 0 to 3"),
    (HeatmapChoice(example=-1, variant="kd", layer=1), "choose one of 0 to 3"),
    (HeatmapChoice(example=0, variant="distilled", layer=1), "choose one of baseline, kd, kd_att_kl, kd_att_mse"),
    (HeatmapChoice(example=0, variant="kd", layer=2), "the student has 2 layers, choose one of 0 to 1"),
    (HeatmapChoice(example=0, variant="kd", layer=1, head=2), "choose one of 0 to 1, or -1 for all heads averaged"),
    (HeatmapChoice(example=0, variant="kd", layer=1, epoch=3), "choose one of the recorded epochs 0, 1, 2"),
    (HeatmapChoice(example=0, variant="kd", layer=1, teacher_layer=4), "the teacher has 4 layers, choose one of 0"),
])
def test_a_heatmap_out_of_range_says_what_to_choose(four_variant_run, tmp_path, choice, fix):
    store, run_id = copy_run(four_variant_run, tmp_path / "runs")
    run = store.open(run_id)
    out = tmp_path / "report.html"
    with pytest.raises(ReportError, match=re.escape(fix)) as e:
        write_report(run, out, [HeatmapChoice(0, "kd", 1), choice])
    assert isinstance(e.value, DistillError)
    assert not out.exists()                                # nothing is written when a choice is wrong


# ---- runs that did not finish -------------------------------------------------------------------------
def test_a_cancelled_run_reports_what_it_recorded(finished_run, tmp_path):
    store, run_id = copy_run(finished_run, tmp_path / "runs", "cancelled-run")
    run = store.open(run_id)
    summary = run.summary()
    run.write_json("summary.json", {
        "status": "cancelled", "error": None, "accuracy": {"teacher": None, "baseline": None, "distilled": None},
        "val_accuracy": summary["val_accuracy"], "divergence": summary["divergence"], "epochs_done": 2})
    run.update_status(status="cancelled")
    page = build_report(run)
    assert_self_contained(page)
    text, tables = read_page(page)
    assert "status cancelled" in text
    assert "no test accuracy: the run was cancelled before its test evaluation" in text
    assert "This report lacks what the run did not record (the run was cancelled)" in text
    assert "No sizes or latencies" in text
    val = tables["validation-table"]
    assert val[0] == ["epoch", "baseline student", "distilled student"] and [r[0] for r in val[1:]] == ["0", "1", "2"]
    assert val[1][2] == f"{100 * summary['val_accuracy']['distilled'][0]:.1f}"
    figures = re.findall(r'data-figure="([^"]+)"', page)
    assert "accuracy_bars" not in figures and figures[:3] == ["validation", "divergence", "grid"]


def test_a_failed_run_without_summary_still_reports(finished_run, tmp_path):
    store, run_id = copy_run(finished_run, tmp_path / "runs", "failed-run")
    run = store.open(run_id)
    (run.path / "summary.json").unlink()
    run.update_status(status="failed", error="out of memory at epoch 2, step 3")
    page = build_report(run)
    assert_self_contained(page)
    text, _ = read_page(page)
    assert "status failed" in text and "problem out of memory at epoch 2, step 3" in text
    assert "no summary.json: the run failed, so there are no test results" in text
    assert "No test accuracy: the run failed before its test evaluation: out of memory" in text
    assert 'data-figure="heatmap 0 distilled"' in page               # the probe set was recorded


def test_a_run_that_failed_before_its_first_epoch(tiny_config, tmp_path):
    store = RunStore(tmp_path / "runs")
    run = store.create(tiny_config.to_dict(), run_id="early-fail")
    run.update_status(status="failed", error="the teacher could not be loaded")
    page = build_report(run)
    assert_self_contained(page)
    text, tables = read_page(page)
    assert page.count('class="figure"') == 0
    for missing in ("no epoch recorded", "no probe set: no attention heatmaps", "the teacher could not be loaded"):
        assert missing in text
    assert "baseline (reference): ce 1" in text                       # the variants, from the config
    assert default_heatmaps(run) == []
    with pytest.raises(ReportError, match=r"no probe set.*heatmaps=\[\]"):
        build_report(run, [HeatmapChoice(0, "baseline", 0)])


def test_every_text_is_escaped(finished_run, tmp_path):
    store, run_id = copy_run(finished_run, tmp_path / "runs")
    run = store.open(run_id)
    cfg = run.config()
    cfg["name"] = '<script>alert("x")</script> & <b>'
    run.write_json("config.json", cfg)
    page = build_report(run)
    assert "<script>alert" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert f"Run {run_id} · {cfg['name']}" in read_page(page)[0]
    assert_self_contained(page)


# ---- command line and the Runs page -------------------------------------------------------------------
def test_cli_writes_the_report(finished_run, tmp_path, capsys):
    store, run_id = copy_run(finished_run, tmp_path / "runs")
    assert main(["report", run_id, "--runs-dir", str(store.root)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == store.root / run_id / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and f"Run {run_id}" in page
    assert_self_contained(page)
    out = tmp_path / "handout" / "r.html"
    assert main(["report", run_id, "--runs-dir", str(store.root), "--out", str(out), "--examples", "2,3"]) == 0
    assert Path(capsys.readouterr().out.strip()) == out
    assert re.findall(r'data-figure="(heatmap [^"]+)"', out.read_text()) == ["heatmap 2 distilled",
                                                                           "heatmap 3 distilled"]
    assert main(["report", run_id, "--runs-dir", str(store.root), "--examples", "7"]) == 2
    assert "example 7 is out of range" in capsys.readouterr().err
    assert main(["report", "nope", "--runs-dir", str(store.root)]) == 2
    assert "no run nope" in capsys.readouterr().err


def test_runs_page_offers_the_report(finished_run, tmp_path, monkeypatch):
    store, run_id = copy_run(finished_run, tmp_path / "runs")
    monkeypatch.setenv("ADS_RUNS_DIR", str(store.root))
    at = open_page(REPO / "app" / "views" / "runs.py", default_timeout=60)
    examples = at.multiselect(key="runs.report_examples")
    assert examples.value == [0, 1]
    assert len(examples.options) == len(store.open(run_id).probe()["texts"])
    assert at.download_button(key="runs.report_download").proto.label == "Download report (.html)"
    assert "opens offline" in texts(at.caption)
    examples.set_value([3]).run()
    assert not at.exception and at.multiselect(key="runs.report_examples").value == [3]


def test_every_axis_makes_room_for_its_labels(four_variant_run, tmp_path):
    """The figures' small margins rely on automargin (the app's Streamlit theme sets it; the report must): every
    axis a trace is drawn on, and every axis of the layout, has it, so no tick label is cut at the edge."""
    store, run_id = copy_run(four_variant_run, tmp_path / "runs")
    page = build_report(store.open(run_id))
    specs = figure_specs(page)
    assert len(specs) == page.count('class="figure"') == 6 + 2 * 3
    for data, layout in specs:
        used = {f"{k[0]}axis{t.get(k, k[0])[1:]}" for t in data for k in ("xaxis", "yaxis")}
        axes = used | {k for k in layout if re.fullmatch(r"[xy]axis\d*", k)}
        assert axes and all(layout.get(a, {}).get("automargin") is True for a in axes), (axes, layout.get("title"))
    names = re.findall(r'data-figure="([^"]+)"', page)
    heatmap = specs[names.index("heatmap 0 kd")][1]
    assert "[CLS]" in heatmap["yaxis"]["ticktext"] and heatmap["yaxis"]["automargin"] is True


# ---- latency -------------------------------------------------------------------------------------------
def test_the_report_says_what_its_latencies_were_taken_under(finished_run, tmp_path):
    store, run_id = copy_run(finished_run, tmp_path / "runs")
    run = store.open(run_id)
    summary = run.summary()
    text, tables = read_page(build_report(run))
    assert " ".join(L.conditions_text(summary["latency_conditions"]).split()) in text

    busy = {**summary["latency_conditions"], "busy": True, "reasons": ["the machine's 1-minute load average was "
                                                                        "7.0 on 2 cores"]}
    run.write_json("summary.json", {**summary, "latency_conditions": busy})
    text, tables = read_page(build_report(run))
    assert "taken under load (the machine's 1-minute load average was 7.0 on 2 cores)" in text
    speedups = [r["speed-up"] for r in rows_by_model(tables["efficiency-table"]).values() if r["speed-up"] != "–"]
    assert speedups and all(x.endswith("× (under load)") for x in speedups)    # never a bare speed-up

    old = {k: v for k, v in summary.items() if k != "latency_conditions"}
    run.write_json("summary.json", old)
    text, tables = read_page(build_report(run))
    assert " ".join(L.NOT_RECORDED.split()) in text and "under load" not in text
    eff = rows_by_model(tables["efficiency-table"])
    assert eff["teacher"]["latency (ms)"] == f"{summary['latency_ms']['teacher']:.1f}"

    record = L.measure_run(run, repeats=3, warmup=1)            # the report reads the latest measurement
    text, tables = read_page(build_report(run))
    eff = rows_by_model(tables["efficiency-table"])
    assert all(eff[model_label(m, "baseline")]["latency (ms)"] == f"{record['latency_ms'][m]:.1f}"
               for m in record["latency_ms"])
    assert "measured again after the session" in text


# ---- in a browser, offline ----------------------------------------------------------------------------
@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run the browser test)")
    pytest.importorskip("playwright.sync_api")
    return str(CHROMIUM)


def test_the_report_renders_offline_in_a_browser(chromium_path, four_variant_run, tmp_path):
    from playwright.sync_api import sync_playwright

    store, run_id = copy_run(four_variant_run, tmp_path / "runs")
    path = write_report(store.open(run_id), tmp_path / "report.html")
    page_html = path.read_text(encoding="utf-8")
    n_figures = page_html.count('class="figure"')
    assert n_figures == 6 + 2 * 3
    url = path.resolve().as_uri()
    requests, aborted, errors, console = [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)

            def only_the_file(route):
                if route.request.url == url:
                    route.continue_()
                else:
                    aborted.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.goto(url)
            page.wait_for_function(
                "n => document.querySelectorAll('.js-plotly-plot').length === n && "
                "[...document.querySelectorAll('.js-plotly-plot')].every(e => e._fullLayout)", arg=n_figures,
                timeout=60_000)
            svgs = page.locator(".plotly .main-svg").count()
            heatmaps = page.evaluate("""() => [...document.querySelectorAll('.heatmap .js-plotly-plot')].map(el =>
                el._fullData.map(t => [t.type, (t.z || []).length]))""")
            # every tick label and axis title whole inside its figure: none cut at the edge (automargin)
            cut = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(el => {
                const box = el.querySelector('.main-svg').getBoundingClientRect();
                return [...el.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')]
                    .filter(t => t.textContent.trim()).filter(t => {
                        const r = t.getBoundingClientRect();      // a label plotly hides has no size
                        return (r.width > 0 || r.height > 0) && (r.left < box.left - 1 || r.right > box.right + 1 ||
                               r.top < box.top - 1 || r.bottom > box.bottom + 1); })
                    .map(t => t.textContent); })""")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == [url] and not aborted, aborted
    assert not errors, errors
    assert not console, console                          # a refused request (CSP) would be logged here
    assert svgs >= n_figures
    assert cut == []
    tokens = len(store.open(run_id).probe()["tokens"][0])
    assert heatmaps[0] == [["heatmap", tokens]] * 3          # teacher, student, difference of example 0
    assert (tmp_path / "report.png").stat().st_size > 0
