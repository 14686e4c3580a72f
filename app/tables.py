"""The accuracy table, built once for the Accuracy page and the HTML report: a pure function of a run's summary (no
Streamlit). The page shows the numbers as they are (its columns format them); the report writes them as text.

Column names are short, so that the table fits a 1280 px wide screen beside the sidebar without its headers cut;
what each column means at length is in COLUMN_HELP (the page's column help) and vs_help."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from distill_core.stats import binomial_halfwidth
from distill_core.vocab import TEACHER

HEADER_CHARS = 20                   # the longest column name: a wider header would push the table past the screen
ACCURACY, HALFWIDTH, OF_TEACHER = "accuracy (%)", "± 95% (points)", "% of teacher"
PAIRED_INTERVAL = "paired 95%"
MCNEMAR_P = "McNemar p"
DISCORDANT = "only it / only ref."
RANDOMISATION_P = "randomisation p"     # a score made of per-example units (entity F1, sentence chrF)
AHEAD = "it ahead / ref. ahead"
INDEPENDENT_INTERVAL = "independent 95%"
COLUMN_HELP = {
    HALFWIDTH: "this model's own uncertainty, normal approximation: 1.96·√(p(1−p)/n)",
    PAIRED_INTERVAL: "95% interval of the difference from the reference, in points: a paired bootstrap, resampling test "
                     "examples with both models' answers together",
    MCNEMAR_P: "exact McNemar test on the examples only one of the two got right; below 0.05: a clear difference",
    DISCORDANT: "the examples only this variant got right / only the reference got right: the examples the two "
                "disagree on, the only ones that tell which is better",
    INDEPENDENT_INTERVAL: "95% interval of the difference from the reference, in points, treating the two accuracies "
                          "as independent",
    OF_TEACHER: "this model's test accuracy as a percentage of the teacher's",
    RANDOMISATION_P: "paired approximate randomisation test: the share of random swaps of the two models' answers, "
                     "example by example, that differ at least as much; below 0.05: a clear difference",
    AHEAD: "the examples on which this variant scored higher / the reference scored higher",
}


def metric_column(short: str = "accuracy") -> str:
    """The column of a model's main score: "accuracy (%)", "F1 (%)", "chrF (%)"."""
    return ACCURACY if short == "accuracy" else f"{short} (%)"


def vs_column(reference: str | None) -> str:
    """The column of each variant's accuracy minus the reference's (in points, see vs_help): named after the
    reference while the name is short."""
    name = f"vs {reference}" if reference else ""
    return name if name and len(name) <= HEADER_CHARS else "vs reference"


def vs_help(reference: str | None) -> str:
    """What the vs_column holds, at length."""
    return f"this variant's test accuracy minus the {reference or 'reference'}'s, in points"


def _percent(a: float | None) -> float | None:
    return 100 * a if a is not None else None


def _halfwidth(a: float | None, n: int) -> float | None:
    return 100 * binomial_halfwidth(a, n) if a is not None and n else None


def _of_teacher(a: float | None, t_acc: float | None) -> float | None:
    return 100 * a / t_acc if a is not None and t_acc else None


def _interval_cells(v: dict, paired: bool, independent: bool, units: bool = False) -> dict:
    """The paired columns of one model's row (empty cells for the teacher and the reference), or with `independent`
    the independent interval of a variant compared without pairs."""
    if paired:
        has = "p" in v
        units = units or bool(v.get("statistic"))
        return {PAIRED_INTERVAL: f"{100 * v['lo']:+.1f} to {100 * v['hi']:+.1f}" if has else None,
                RANDOMISATION_P if units else MCNEMAR_P: v.get("p"),
                AHEAD if units else DISCORDANT: f"{v['variant_only']} / {v['ref_only']}" if has else None}
    if independent and v.get("lo") is not None:
        return {INDEPENDENT_INTERVAL: f"{100 * v['lo']:+.1f} to {100 * v['hi']:+.1f}"}
    return {}


def _cost_cells(m: str, params: dict, size_bytes: dict, latency_ms: dict) -> dict:
    t_lat = latency_ms.get(TEACHER)
    return {"params (M)": params[m] / 1e6 if m in params else None,
            "size (MB)": size_bytes[m] / 1e6 if m in size_bytes else None,
            "latency (ms)": latency_ms.get(m),
            "speed-up": t_lat / latency_ms[m] if t_lat and latency_ms.get(m) else None}


def _further_teacher_row(t: dict, n: int, t_acc: float | None) -> dict:
    """A further teacher's row, or their ensemble's (fig_teachers.further_rows): accuracy and size only."""
    a = t["accuracy"]
    return {"model": t["label"], ACCURACY: _percent(a), HALFWIDTH: _halfwidth(a, n),
            OF_TEACHER: _of_teacher(a, t_acc),
            "params (M)": t["params"] / 1e6 if t["params"] else None,
            "size (MB)": t["size_bytes"] / 1e6 if t["size_bytes"] else None}


def accuracy_rows(models: Sequence[str], accuracy: dict, n: int, verdicts: dict, label: Callable[[str], str],
                  objectives: dict, params: dict, reference: str | None, *, paired: bool = False,
                  independent: bool = False, costs: tuple[dict, dict] | None = None,
                  further: Sequence[dict] = (), metric: str = "accuracy") -> list[dict]:
    """One row per model that has a size or a test accuracy (the teacher first): its accuracy and own 95% interval
    (points), its difference from the reference, the paired columns when the run has paired comparisons (or, with
    `independent`, the independent interval otherwise), its share of the teacher's accuracy; with `costs` =
    (size_bytes, latency_ms) its parameters, size, latency and speed-up. `further` rows (further teachers and their
    ensemble) follow the first teacher's. verdicts: variant -> its row of verdicts.paired_verdicts or
    accuracy_verdicts. Numbers stay numbers (accuracy in %, differences in points). `metric`: the short name of the
    run's main score; other than accuracy (entity F1, chrF) it has no binomial interval of its own and its pairs
    come from per-example units (randomisation test)."""
    t_acc = accuracy.get(TEACHER)
    vs = vs_column(reference)
    units = metric != "accuracy"
    column = metric_column(metric)
    rows = []
    for m in models:
        if m not in params and accuracy.get(m) is None:
            continue
        a, v = accuracy.get(m), verdicts.get(m, {})
        row = {"model": label(m), "objectives": None if m == TEACHER else objectives.get(m),
               column: _percent(a), **({} if units else {HALFWIDTH: _halfwidth(a, n)}),
               vs: 100 * v["diff"] if v.get("diff") is not None else None,
               **_interval_cells(v, paired, independent, units),
               OF_TEACHER: _of_teacher(a, t_acc)}
        if costs is not None:
            row.update(_cost_cells(m, params, *costs))
        rows.append(row)
        if m == TEACHER:
            rows += [_further_teacher_row(t, n, t_acc) for t in further]
    return rows
