"""benchmarks/figures_bench.py on a tiny finished run: an entry for every page, numbers or "n/a" with a reason, and
the summary rows. Nothing here checks a time."""
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("figures_bench")


def test_help_lists_the_options(bench, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--runs-dir", "--run", "--repeats", "--json", "--keep", "--compress", "--seeds"):
        assert flag in out


def test_every_page_has_numbers_or_a_reason(bench, run_copy):
    result = bench.bench_pages({"tiny": run_copy.path}, repeats=1)
    pages = result["runs"]["tiny"]["pages"]
    assert set(bench.PAGES) <= set(pages)
    for name, entry in pages.items():
        if "na" in entry:
            assert entry["na"].strip(), name
            continue
        assert entry["builds"] == 1, name
        assert 0 <= entry["min_s"] <= entry["median_s"] <= entry["max_s"], name
        assert entry["figures"] >= 0 and entry["json_bytes"] >= 0, name
    for name in ("accuracy", "divergence", "explorer", "compare", "attributions", bench.EXPLORER_TEXT,
                 bench.EXPLORER_GRID, bench.REPORT):
        assert "na" not in pages[name], (name, pages[name])
        assert pages[name]["figures"] > 0 and pages[name]["json_bytes"] > 0, name
    assert pages["runs"]["figures"] == 0                          # the Runs page draws none; its report does
    for name in ("compression", "sweep", "generated"):            # never compressed, no sweep, no generated data
        assert "na" in pages[name], name
    # the explorer's three default figures and the head-averaged triptych, as the page draws them
    assert pages["explorer"]["figures"] == 4
    assert pages["explorer"]["charts"] == ["heatmap_triptych", "head_grid", "head_grid", "heatmap_triptych"]

    rows = bench.summary_rows(result)
    assert len(rows) == 1
    assert set(rows[0]) == {"measure", "value", "target", "met"}
    assert rows[0]["met"] in ("yes", "no")
    assert all(isinstance(v, str) for v in rows[0].values())
    assert "tiny" in rows[0]["measure"]
    table = bench.format_table(result)
    for name in bench.PAGES:
        assert f"| {name} | tiny |" in table


def test_a_compressed_run_measures_the_compression_page(bench, run_copy):
    from distill_core.compress import compress_run
    compress_run(run_copy, fractions=(0.0, 0.5))
    result = bench.bench_pages({"tiny": run_copy.path}, repeats=1, pages=["compression"])
    pages = result["runs"]["tiny"]["pages"]
    assert list(pages) == ["compression"]
    assert "na" not in pages["compression"] and pages["compression"]["figures"] > 0
