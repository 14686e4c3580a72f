"""Accuracy and efficiency: what each objective bought, with honest error bars, and what the students cost."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import common, live, page_data, roles, state, tables, tasks
from app.figures import accuracy as fig_accuracy, teachers as fig_teachers
from app.tables import accuracy_rows, vs_column
from distill_core import latency as lat
from distill_core.errors import DistillError
from distill_core.verdicts import best_epoch_text, ensemble_reading, health_lines, robustness_reading, verdict_lines
from distill_core.vocab import TEACHER

K = "accuracy."
view = state.View("accuracy", [])
view.restore()

head_l, head_r = st.columns([3, 1], vertical_alignment="bottom")
head_l.title("Accuracy and efficiency")
st.caption("Test-set accuracy of the teacher and of every student variant. The variants are the same student, "
           "started from the same weights and trained on the same batches: only their objectives differ. Each is "
           "compared with the **reference**, the variant trained on the labels only.")

run = common.pick_run(K + "run")
if run is None:
    st.stop()
view.sync()
with head_r:
    state.link_button(view)
try:
    summary = run.summary()
    status = run.status().get("status", "unknown")
    image_run = tasks.of(run.probe()).pictures
except DistillError as e:
    common.show_error(e)
    st.stop()

if summary is None:
    st.info(f"Run {run.id} is {status}: test accuracy, sizes and latencies appear here when it finishes. "
            "Validation accuracy per epoch is on the **Runs** page meanwhile.")
    st.stop()

variants = common.variants_of(run)
ref = variants.reference
scores = page_data.scores_of(summary, variants.names, ref)
measure, short, acc, n = scores.measure, scores.short, scores.accuracy, scores.n
if measure != "accuracy":
    st.caption(f"This run's score is **{measure}** (higher is better): it stands where a classifier's accuracy stands "
               f"on this page, in the table, the bars and the verdicts.")
if all(acc.get(m) is None for m in (TEACHER, *variants.names)):
    why = summary.get("error") or ""
    st.warning(f"Run {run.id} was {summary.get('status', status)} before its test evaluation, so it has no test "
               f"accuracy to compare{': ' + why if why else ''}. Start a new session and let it finish to get one.")
    val = summary.get("val_accuracy") or {}
    epochs = (summary.get("divergence") or {}).get("epochs") or []
    if val and epochs:
        st.markdown("Validation accuracy of the epochs it finished (not a test result):")
        table = pd.DataFrame({variants.label(v): val[v] for v in variants.names
                              if len(val.get(v) or []) == len(epochs)},
                             index=pd.Index(epochs, name="epoch"))
        st.dataframe(table.style.format("{:.1%}"), key=K + "val_table")
    st.stop()

# ---- model health: what must be read before any accuracy ---------------------------------------------
if health := health_lines(summary.get("warnings") or []):
    st.warning("\n".join(f"- {line}" for line in health), icon=":material/warning:")
majority = scores.majority
if majority is not None:
    st.markdown(f"Always answering the most common class scores **{majority:.1%}** on this test set: a model "
                "has learned something only if it clearly beats that.")

timed = lat.run_latency(run, summary)          # the session's latencies, or the latest "Measure again"
params, size, latency = summary.get("params") or {}, summary.get("size_bytes") or {}, timed.latency_ms
paired, verdicts = scores.paired, scores.verdicts      # older runs: no pairs, and the independent intervals below
vs = vs_column(ref)
rows = accuracy_rows((TEACHER, *variants.names), acc, n, verdicts, variants.label, common.objectives_text(run), params,
                     ref, paired=bool(paired), costs=(size, latency),
                     further=fig_teachers.further_rows(summary),   # several teachers: the others, after the first
                     metric=short)
number = st.column_config.NumberColumn
st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "table", placeholder="–", column_config={
    tables.metric_column(short): number(format="%.1f"),
    tables.HALFWIDTH: number(format="%.1f", help=tables.COLUMN_HELP[tables.HALFWIDTH]),
    vs: number(format="%+.1f", help=tables.vs_help(ref)),
    tables.PAIRED_INTERVAL: st.column_config.TextColumn(help=tables.COLUMN_HELP[tables.PAIRED_INTERVAL]),
    tables.INDEPENDENT_INTERVAL: st.column_config.TextColumn(help=tables.COLUMN_HELP[tables.INDEPENDENT_INTERVAL]),
    tables.MCNEMAR_P: number(format="%.3f", help=tables.COLUMN_HELP[tables.MCNEMAR_P]),
    tables.DISCORDANT: st.column_config.TextColumn(help=tables.COLUMN_HELP[tables.DISCORDANT]),
    tables.RANDOMISATION_P: number(format="%.3f", help=tables.COLUMN_HELP[tables.RANDOMISATION_P]),
    tables.AHEAD: st.column_config.TextColumn(help=tables.COLUMN_HELP[tables.AHEAD]),
    tables.OF_TEACHER: number(format="%.0f", help=tables.COLUMN_HELP[tables.OF_TEACHER]),
    "params (M)": number(format="%.2f"),
    "size (MB)": number(format="%.1f"),
    "latency (ms)": number(format="%.1f"),
    "speed-up": number(format="%.1f×", help="the teacher's latency / this model's"),
})
device = timed.device or summary.get("device") or "unknown device"
st.caption(f"Test set: {n:,} examples. Latency: median time to classify one example (batch of 1, "
           f"probe {'images' if image_run else 'texts'}) on **{device}**"
           f"{', measured again after the session' if timed.remeasured else ''}; size on disk: the saved weights.")


def measure_latency(run_id: str) -> None:
    """Time the run's teacher and students again (it writes latency.json), then draw the page again."""
    with st.spinner("Timing the teacher and every student again, interleaved on one thread…"):
        try:
            lat.measure_run(common.get_store().open(run_id))
        except DistillError as e:
            common.show_error(e)
            return
    st.rerun()


if busy := lat.busy_text(timed.conditions):
    st.warning(busy, icon=":material/timer:")
lat_l, lat_r = st.columns([4, 1], vertical_alignment="center")
lat_l.caption(lat.conditions_text(timed.conditions))
if lat_r.button("Measure again", key=K + "measure_latency", icon=":material/timer:", width="stretch",
                help="Reloads the teacher and the students' final weights and times them again now, interleaved on "
                     "one thread: a few seconds for small students."):
    measure_latency(run.id)
if best := best_epoch_text(summary.get("best_epoch") or {}, variants.names, ref,
                           "an uploaded picture" if image_run else "a typed sentence", short):
    st.caption(best)
if reading := ensemble_reading(fig_teachers.with_twins(summary, run.config(), run.predictions()),
                               variants.label):
    st.markdown(reading)

# ---- the verdict, each variant against the reference -------------------------------------------------
lines = verdict_lines(list(verdicts.values()), ref)
if lines:
    kinds = {r["verdict"] for r in verdicts.values()}
    show = st.success if "better" in kinds else st.warning if "worse" in kinds else st.info
    units = any(c.get("statistic") for c in paired.values())
    how = ("Each variant is paired with the reference on the same examples: the interval is a paired bootstrap "
           f"of the difference in {measure} (examples resampled, both models' answers together), and the p-value "
           "an approximate randomisation test (the two models' answers swapped at random, example by example)."
           if units else
           "Each variant is paired with the reference on the same examples: McNemar's exact test counts the "
           "examples only one of them got right, and the interval is a paired bootstrap of the difference."
           if paired else "Each interval treats the two accuracies as independent; the variants answered the same "
           "examples, so a paired test would be somewhat tighter.")
    show("\n".join(f"- {line}" for line in lines)
         + f"\n\nMeasured on {n:,} test examples with one seed: another seed or a larger test set may change the "
           f"result. {how}")
elif ref is None and len(variants.names) > 1:
    st.info("This run has no reference variant (one trained on the labels only, e.g. named baseline with the ce "
            "loss alone), so there is no verdict: compare the variants' accuracies and their intervals above. Add "
            "such a variant to the next session to measure what the teacher adds.")
elif ref is None:
    st.info("This run trained a single variant and no labels-only reference, so there is nothing to compare it "
            "against.")

c1, c2 = st.columns([1, 1], gap="medium")
bars = fig_accuracy.accuracy_bars(acc, scores.interval_n, variants=variants.names, reference=ref,
                                  majority=majority, title=f"Test {measure}", measure=measure)
with c1:
    st.plotly_chart(common.sized(bars), width="stretch", config=common.PLOTLY_CONFIG, key=K + "accuracy_bars")
with c2:
    if lines:
        diff = fig_accuracy.difference_chart(list(verdicts.values()), ref, variants.names)
        st.plotly_chart(common.sized(diff), width="stretch", config=common.PLOTLY_CONFIG, key=K + "difference")
cost = fig_accuracy.efficiency_bars(params, size, latency, device + (", under load" if timed.busy else ""),
                                    variants.names, ref)
st.plotly_chart(common.sized(cost), width="stretch", config=common.PLOTLY_CONFIG, key=K + "efficiency_bars")
# ---- the task's other measures (entity F1 per type, BLEU and chrF) -------------------------------------
def lm_quality(details: dict, models: list[str]) -> None:
    """A language model's perplexity against the reference's, passage by passage, and each model's continuation of
    the fixed prompts side by side."""
    from distill_core.modality.language_model.scores import compare_perplexity
    if ref is not None and ref in details:
        rows = []
        for m in models:
            if m in (TEACHER, ref):
                continue
            try:
                c = compare_perplexity(details[ref], details[m], seed=int(run.config().get("train", {}).get("seed", 0)))
            except (ValueError, KeyError):
                continue
            rows.append({"variant": variants.label(m), "perplexity": c["perplexity"],
                         f"{variants.label(ref)}": c["ref_perplexity"], "ratio": c["ratio"],
                         "95% interval": f"{c['lo']:.3f} – {c['hi']:.3f}", "p": c["p"], "verdict": c["verdict"],
                         "passages lower / higher": f"{c['lower_passages']} / {c['higher_passages']}"})
        if rows:
            st.markdown(f"**Perplexity against {variants.label(ref)}, passage by passage** (ratio under 1: lower "
                        f"perplexity, better; a paired bootstrap over the {c['n']} test passages)")
            st.dataframe(pd.DataFrame(rows), hide_index=True, key=K + "perplexity_pairs",
                         column_config={"perplexity": st.column_config.NumberColumn(format="%.2f"),
                                        variants.label(ref): st.column_config.NumberColumn(format="%.2f"),
                                        "ratio": st.column_config.NumberColumn(format="%.3f"),
                                        "p": st.column_config.NumberColumn(format="%.4f")})
    prompts = (run.probe() or {}).get("sample_prompts") or []
    samples = {m: details[m].get("samples") for m in models if details[m].get("samples")}
    if prompts and samples:
        st.markdown("**Samples from fixed prompts** (the opening of each probe passage, continued by every model "
                    "from one seed: the same seed gives the same text again)")
        for i, prompt in enumerate(prompts):
            st.dataframe(pd.DataFrame([{"model": variants.label(m), "prompt": prompt, "continuation": s[i]}
                                       for m, s in samples.items() if i < len(s)]),
                         hide_index=True, key=K + f"samples_{i}")


if details := summary.get("details"):
    st.subheader(tasks.of(run.probe()).details_title)
    models = [m for m in (TEACHER, *variants.names) if m in details]
    table = fig_accuracy.details_table(details, models)
    if table:
        frame = pd.DataFrame([{"model": variants.label(r.pop("model")), **r} for r in table])
        st.dataframe(frame, hide_index=True, key=K + "details", placeholder="–",
                     column_config={c: st.column_config.NumberColumn(format=fig_accuracy.detail_format(c))
                                    for c in frame.columns if c not in ("model", "beam")})
    if tasks.of(run.probe()).continues:          # a language model: perplexity paired by passage, and samples
        lm_quality(details, models)
    if any(details[m].get("per_type") for m in models):
        per_type = fig_accuracy.per_type_f1(details, models, variants.label, reference=ref)
        st.plotly_chart(common.sized(per_type), width="stretch", config=common.PLOTLY_CONFIG, key=K + "per_type")
    for line in fig_accuracy.details_notes(details, models, variants.label):
        st.warning(line, icon=":material/warning:")
# ---- robustness under attack --------------------------------------------------------------------------
if not tasks.of(run.probe()).attacks:
    if notices := summary.get("notices"):
        st.info("**About the data and training**\n" + "\n".join(f"- {x}" for x in notices))
    st.stop()
st.subheader("Robustness under attack")


def measure(run_id: str) -> None:
    """Run the attack on every model of the run (it writes robustness.json), then draw the page again."""
    if roles.refused("measure robustness"):
        return
    with st.spinner("Attacking every model on up to 500 test examples: about a minute on a CPU…"):
        try:
            live.measure_robustness(run_id)
        except DistillError as e:
            common.show_error(e)
            return
    st.rerun()


try:
    robust = run.read_json("robustness.json")
except DistillError as e:
    common.show_error(e)
    robust = None
if robust:
    st.plotly_chart(common.sized(fig_accuracy.robustness_figure(robust, variants.names, ref)), width="stretch",
                    config=common.PLOTLY_CONFIG, key=K + "robustness")
    st.markdown(robustness_reading(robust, ref))
else:
    nudged = ("pixels are nudged, each by at most a small fraction of the pixel range" if image_run else
              "word embeddings are nudged, each by a small fraction of its own size")
    st.markdown(f"How much accuracy each model keeps when its input's {nudged}, in the direction that hurts that "
                f"model most (found by PGD).")
    if not roles.may_change():
        st.caption("Not measured for this run yet; the instructor can measure it here.")
    elif st.button("Measure robustness", key=K + "measure_robustness", icon=":material/shield:",
                   help="Attacks the teacher and every variant on up to 500 test examples: about a minute on a CPU."):
        measure(run.id)
if notices := summary.get("notices"):
    st.info("**About the data and training**\n" + "\n".join(f"- {x}" for x in notices))
