"""Command line: python -m distill_core run | runs | show | robustness | latency | compress | export | cancel | delete |
cache | sweep | sweeps. The commands that draw with the app's figures (report, and sweep.html) are the app's:
`python -m app`."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from . import distributed, sweep as sweep_lib  # sweep_lib.run_sweep: tests replace it to stand in for a whole sweep
from .attacks import EPSILONS, LIMIT, STEPS, check_settings
from .cache import cache_entries, cache_root, clear_cache
from .compress import DEFAULT_FRACTIONS, compress_run, parse_fractions
from .config import TASKS, SessionConfig, parse_value
from .errors import ConfigError, DistillError
from .export import check_push, export_student, load_line, push_to_hub
from .latency import busy_text, conditions_text, measure_run
from .machine import ORIGIN_ENV
from .preflight import preflight
from .robustness import run_robustness
from .session import run_in_child, run_session
from .session.callbacks import TqdmProgress
from .stats import p_text, test_label
from .store import WEIGHTS, RunStore
from .sweep import SweepStore, format_summary, parse_seeds, summarize_sweep
from .vocab import run_reference, run_variants


def build_config(args) -> SessionConfig:
    cfg = SessionConfig.load(args.config) if args.config else SessionConfig()
    overrides = {}
    flag_map = {"data": "data.source", "text_column": "data.text_column", "label_column": "data.label_column",
                "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
                "seed": "train.seed", "device": "train.device", "time_budget": "train.time_budget_s",
                "teacher": "teacher.source", "student_layers": "student.layers", "student_heads": "student.heads",
                "student_hidden": "student.hidden", "name": "name", "train_size": "data.train_size", "task": "task"}
    for flag, key in flag_map.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.no_baseline:
        overrides["train.baseline"] = False
    for pair in args.set or []:
        if "=" not in pair:
            raise DistillError(f"--set takes key=value (e.g. train.epochs=2), not {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    return cfg.with_overrides(overrides) if overrides else cfg


def fmt_acc(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_paired(paired: dict, variants: list[str], ref: str | None, width: int) -> None:
    """Each variant against the reference on the same test examples (summary.json "paired")."""
    shown = [v for v in variants if v in paired]
    if not shown or ref is None:
        return
    units = bool(paired[shown[0]].get("statistic"))
    print(f"  paired with {ref} on the same {paired[shown[0]]['n']} test examples "
          f"(bootstrap 95% interval of the difference, "
          f"{'approximate randomisation test' if units else 'McNemar' + chr(39) + 's exact test'})")
    for v in shown:
        c = paired[v]
        counts = (f"{ref} higher on {c['ref_only']}, {v} on {c['variant_only']}" if units else
                  f"{ref} alone right on {c['ref_only']}, {v} alone on {c['variant_only']}")
        print(f"    {v:<{width}}  {100 * c['diff']:+.1f} points (95% interval {100 * c['lo']:+.1f} to "
              f"{100 * c['hi']:+.1f}), {test_label(c)} {p_text(c['p'])}: {c['verdict']} ({counts})")
    if any(paired[v]["verdict"] not in ("better", "worse") for v in shown):
        print("    no clear difference: a sweep across seeds (python -m distill_core sweep --seeds 0-4) tells more")


def print_summary(run_id: str, summary: dict, status: dict) -> None:
    acc = summary.get("accuracy", {})
    variants = run_variants(summary)
    ref = run_reference(summary, variants)
    print(f"run {run_id}: {status.get('status')}" + (f" ({status.get('error')})" if status.get("error") else ""))
    width = max([10, *map(len, variants)])
    metric = (summary.get("metric") or {}).get("name", "accuracy")
    print(f"  test {metric} (n={summary.get('test_size', '-')})")
    for name in ("teacher", *variants):
        gain = ""
        if ref and name not in ("teacher", ref) and acc.get(name) is not None and acc.get(ref) is not None:
            gain = f"   {100 * (acc[name] - acc[ref]):+.1f} points vs {ref}"
        print(f"    {name:<{width}}  {fmt_acc(acc.get(name)):>6}{gain}")
    for name, d in (summary.get("details") or {}).items():       # the task's other measures (BLEU, chrF, P/R, ...)
        shown = ", ".join(f"{k} {v:.3g}" for k, v in d.items() if isinstance(v, (int, float))
                          and not isinstance(v, bool))
        if shown:
            print(f"    {name:<{width}}  {shown}")
    teachers, ens = summary.get("teachers") or [], summary.get("ensemble") or {}
    for t in teachers[1:]:
        print(f"    {t['name']:<{width}}  {fmt_acc(t.get('accuracy')):>6}   ({t.get('source')}, seed {t.get('seed')}"
              + (f", part {t['finetune_part']}" if t.get("finetune_part") else "") + ")")
    if ens.get("accuracy") is not None:
        print(f"    {'ensemble':<{width}}  {fmt_acc(ens['accuracy']):>6}   ({len(teachers)} teachers, {ens.get('combine')} of "
              f"{ens.get('average', 'logits')}; "
              f"learnt from by {', '.join(ens.get('used_by') or []) or 'no variant'})")
    for v, t in (summary.get("twins") or {}).items():
        print(f"  {v} vs {t['twin']} (the same recipe from the first teacher): {100 * t['diff']:+.1f} points, "
              f"McNemar p = {t['p']:.3f}, {t['verdict']}")
    if summary.get("majority_rate") is not None:
        print(f"  always answering the most common class scores {fmt_acc(summary['majority_rate'])}")
    print_paired(summary.get("paired") or {}, variants, ref, width)
    for w in summary.get("warnings") or []:
        print(f"  warning: {w.get('message')}")
    div = summary.get("divergence", {})
    if div.get("epochs"):
        print(f"  attention {div.get('metric', 'js').upper()} to the teacher, epochs {div['epochs']}")
        for name in variants:
            if name in div:
                print(f"    {name:<{width}}  " + " ".join(f"{v:.4f}" for v in div[name]))
    if summary.get("params"):
        p, s, lat = summary["params"], summary.get("size_bytes", {}), summary.get("latency_ms", {})
        for name in ("teacher", *variants):
            if name in p:
                ms = f"{lat[name]:.1f} ms" if name in lat else "-"
                print(f"  {name:<{width}} {p[name] / 1e6:6.2f} M params  {s.get(name, 0) / 1e6:6.1f} MB  {ms}")
        if busy := busy_text(summary.get("latency_conditions")):
            print(f"  note: {busy}")
    for v, names in (summary.get("strategies") or {}).items():
        print(f"  {v}: " + ", ".join(names))
    gen = summary.get("generated")
    if gen:
        source = f" ({gen['source']})" if gen.get("source") not in (None, "none") else ""
        print(f"  generated data{source}: {gen['transfer']:,} transfer texts and {gen['augmented']:,} "
              f"augmented copies, labelled by the teacher, used by {', '.join(gen.get('used_by') or [])}")
    for n in summary.get("notices") or []:
        print(f"  note: {n}")
    for v, b in (summary.get("best_epoch") or {}).items():
        if b.get("epoch") != b.get("final_epoch"):
            test = f", test {fmt_acc(b['test_accuracy'])}" if b.get("test_accuracy") is not None else ""
            print(f"  {v}: best validation epoch {b['epoch']} of {b['final_epoch']}{test} (weights kept in "
                  f"models/{v}.best)")
    if summary.get("wall_s"):
        waited = (f", after waiting {summary['machine_wait_s']:.0f} s for another session to give the machine back"
                  if summary.get("machine_wait_s") else "")
        print(f"  wall time {summary['wall_s']:.0f} s on {summary.get('device')}{waited}")


def cmd_run(args) -> int:
    cfg = build_config(args)
    store = RunStore(args.runs_dir)
    preflight(cfg, store)
    if distributed.active():
        return _run_distributed(cfg, store, args.quiet)
    run = store.create(cfg.to_dict())
    ended = run_in_child(run, progress=not args.quiet)      # a native crash ends the child; this process records it
    if ended.get("status") == "failed":
        print(f"error: {ended.get('error')} (run {run.id})", file=sys.stderr)
        return 2 if ended.get("exit_code") == 2 else 1
    print(run.id)
    print_summary(run.id, run.summary() or {}, run.status())
    return 0


def _run_distributed(cfg: SessionConfig, store: RunStore, quiet: bool) -> int:
    """Started by accelerate launch or torchrun: the launcher made one process per device, and each trains here."""
    main = distributed.is_main()       # only the main one shows
    callbacks = [] if quiet or not main else [TqdmProgress()]
    distributed.raise_on_termination()
    run_id = run_session(cfg, store, callbacks)
    distributed.finish()
    if not main:
        return 0
    run = store.open(run_id)
    print(run_id)
    print_summary(run_id, run.summary() or {}, run.status())
    return 0


def cmd_sweep(args, after=None) -> int:
    """Run the sweep; `after(folder, summary)` is called with the sweep's folder when it is written (the app's
    command line draws sweep.html there)."""
    if args.seed is not None:
        raise DistillError("a sweep sets train.seed itself, once per seed: use --seeds (e.g. --seeds 0-4), not --seed")
    seeds = parse_seeds(args.seeds)
    cfg = build_config(args)
    store = RunStore(args.runs_dir)
    preflight(cfg, store)
    sweeps = SweepStore(store.root)
    print(f"sweep of {len(seeds)} seeds ({', '.join(map(str, seeds))}) into {store.root}")
    sweep_id = sweep_lib.run_sweep(cfg, seeds, store, sweeps, name=args.name or cfg.name,
                                   progress=not args.quiet, report=print,
                                   against=args.against)
    summary = sweeps.open(sweep_id)["summary"]
    print(f"sweep {sweep_id}")
    print(format_summary(summary))
    if after is not None:
        after(sweeps.folder(sweep_id), summary)
    print(f"written: {sweeps.folder(sweep_id)}/sweep.json")
    return 0 if summary["status"] == "done" else 1


def cmd_sweeps(args) -> int:
    if args.show:
        sweeps = SweepStore(args.runs_dir)
        summary = summarize_sweep(sweeps.runs, sweeps.open(args.show), against=args.against)
        print(f"sweep {args.show}")
        print(format_summary(summary))
        return 0
    if args.against:
        raise DistillError("--against needs --show SWEEP_ID: the sweep to summarise")
    infos = SweepStore(args.runs_dir).list()
    if not infos:
        print("no sweeps yet; start one with `python -m distill_core sweep --seeds 0-4`")
        return 0
    print(f"{'sweep id':<40} {'status':<9} {'created':<20} seeds")
    for s in infos:
        seeds = ",".join(map(str, s["seeds"])) or "-"
        print(f"{s['id']:<40} {s['status']:<9} {s['created']:<20} {seeds}" + (f"  {s['name']}" if s["name"] else ""))
    return 0


def cmd_runs(args) -> int:
    store = RunStore(args.runs_dir)
    infos = store.list()
    if not infos:
        print(f"no runs in {store.root}; start one with `python -m distill_core run`")
        return 0
    print(f"{'run id':<38} {'status':<11} {'started':<20} {'dataset':<18} {'ep':>2}  test accuracy")
    for r in infos:
        a = r.accuracy
        accs = "  ".join(f"{k} {fmt_acc(v)}" for k, v in a.items() if v is not None) or "-"
        print(f"{r.run_id:<38} {r.status:<11} {r.started:<20} {r.dataset[:18]:<18} {r.epochs_done:>2}  {accs}")
        if r.status in ("failed", "interrupted") and r.error:
            print(f"    {r.status}: {r.error}")
    return 0


def cmd_show(args) -> int:
    store = RunStore(args.runs_dir)
    run = store.open(args.run_id)
    summary, status = run.summary() or {}, run.status()
    if args.json:
        print(json.dumps({"run_id": run.id, "status": status, "config": run.config(), "summary": summary},
                         indent=2))
    else:
        print_summary(run.id, summary, status)
        robustness = run.read_json("robustness.json")
        if robustness:
            print_robustness(robustness)
    return 0


def parse_epsilons(text: str) -> list[float]:
    """--epsilons "0,0.02,0.05" -> [0.0, 0.02, 0.05]; anything else is a ConfigError naming the fix."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--epsilons takes numbers of 0 or more separated by commas (e.g. 0,0.02,0.05,0.1), "
                          f"not {text!r}") from None


def print_robustness(record: dict) -> None:
    """Accuracy per model (rows) and epsilon (columns)."""
    eps, acc = record["epsilons"], record["accuracy"]
    width = max([10, *map(len, acc)])
    print(f"accuracy under attack ({record['attack']}; {record['steps']} steps, first {record['n']} "
          f"{record['split']} examples, {record['seconds']:.0f} s)")
    print(f"  {'epsilon':<{width}}  " + "  ".join(f"{e:>6g}" for e in eps))
    for name, values in acc.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{fmt_acc(v):>6}" for v in values))


def cmd_latency(args) -> int:
    """A finished run's teacher and students timed again, interleaved on one thread, written to its latency.json."""
    run = RunStore(args.runs_dir).open(args.run_id)
    record = measure_run(run)
    ms, cond = record["latency_ms"], record.get("conditions")
    teacher = ms.get("teacher")
    for name, value in ms.items():
        speed = f"  {teacher / value:.1f}× the teacher's speed" if teacher and name != "teacher" else ""
        print(f"  {name:<12} {value:8.2f} ms{speed}")
    print(f"  {conditions_text(cond)}")
    if busy := busy_text(cond):
        print(f"  note: {busy}")
    print(f"written: {run.path / 'latency.json'}")
    return 0


def cmd_robustness(args) -> int:
    """Accuracy of a finished run's models under PGD on the word embeddings, written to its robustness.json."""
    epsilons = parse_epsilons(args.epsilons)
    check_settings(epsilons, args.steps, args.limit)
    run = RunStore(args.runs_dir).open(args.run_id)
    print_robustness(run_robustness(run, epsilons, args.steps, args.limit))
    print(f"written: {run.path / 'robustness.json'}")
    return 0


def print_compression(record: dict, variants: list[str] | None = None) -> None:
    """Each compressed variant's versions (size, latency, test accuracy, JS to the teacher) and its pruning curve."""
    entries = record.get("variants") or {}
    shown = [v for v in (variants or list(entries)) if v in entries]
    print(f"compressed versions (on {record.get('device', 'cpu')}; test accuracy on {record.get('test_size')} "
          f"examples; latency: median ms for one probe example; JS: attention to the teacher on the probe set, "
          f"mean over the heads each version keeps)")
    for name in shown:
        e = entries[name]
        width = max([22, *(len(v["name"]) for v in e["versions"])])
        print(f"  {name}")
        print(f"    {'version':<{width}} {'size MB':>8} {'latency ms':>11} {'test acc':>9} {'JS':>8}")
        for v in e["versions"]:
            js = "-" if v.get("js") is None else f"{v['js']:.4f}"
            print(f"    {v['name']:<{width}} {v['size_bytes'] / 1e6:>8.1f} {v['latency_ms']:>11.2f} "
                  f"{fmt_acc(v['test_accuracy']):>9} {js:>8}")
        curve = e.get("pruning_curve")
        if curve:
            heads = len(curve[0]["head_mask"]) * len(curve[0]["head_mask"][0])
            print(f"    pruning curve (heads removed of {heads}, by least importance):")
            print("      fraction  " + "  ".join(f"{p['fraction']:>6g}" for p in curve))
            print("      removed   " + "  ".join(f"{p['heads_removed']:>6d}" for p in curve))
            print("      test acc  " + "  ".join(f"{fmt_acc(p['test_accuracy']):>6}" for p in curve))
        for n in e.get("notes") or []:
            print(f"    note: {n}")


def cmd_compress(args) -> int:
    """int8 versions and head-pruned versions of a finished run's students, measured and written beside the run."""
    fractions = parse_fractions(args.fractions) if args.fractions is not None else DEFAULT_FRACTIONS
    run = RunStore(args.runs_dir).open(args.run_id)
    bar = None
    if not args.quiet:
        bar = tqdm(desc="compress", unit="version", leave=False, dynamic_ncols=True)

    def report(phase: str, done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.set_description_str(phase, refresh=False)
        bar.refresh()
    try:
        record = compress_run(run, args.variant, fractions, progress=report if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    print_compression(record)
    print(f"written: {run.path / 'compression.json'} and {run.path / 'compressed'}/")
    return 0


def cmd_export(args) -> int:
    """A trained student of a finished run as a Hugging Face model folder (weights, config, tokenizer, model card),
    pushed to the Hub when asked (checked before anything is written)."""
    run = RunStore(args.runs_dir).open(args.run_id)
    if args.push_to_hub:
        check_push(args.push_to_hub)
    folder = export_student(run, args.out_dir, args.variant, args.weights, args.overwrite, model_id=args.push_to_hub)
    print(f"written: {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    print(f"load it with: {load_line(run, str(folder))}")
    if args.push_to_hub:
        print(f"pushed: {push_to_hub(folder, args.push_to_hub, private=not args.public)}; load it with: "
              f"{load_line(run, args.push_to_hub)}")
    return 0


def cmd_cancel(args) -> int:
    RunStore(args.runs_dir).open(args.run_id).request_cancel()
    print(f"cancel requested for {args.run_id}; it stops after the current step and keeps its finished epochs")
    return 0


def cmd_delete(args) -> int:
    RunStore(args.runs_dir).delete(args.run_id)
    print(f"deleted {args.run_id}")
    return 0


ALL = object()   # `cache --clear` without a key


def cmd_cache(args) -> int:

    root = cache_root()
    if args.clear is not None:
        freed = clear_cache(None if args.clear is ALL else args.clear)
        kept = len(cache_entries()) if args.clear is ALL else 0
        print(f"freed {freed / 1e6:.1f} MB in {root}" + (f"; kept {kept} in use by a running session" if kept else ""))
        return 0
    entries = cache_entries()
    if not entries:
        print(f"the cache {root} is empty (ADS_CACHE_DIR moves it)")
        return 0
    print(f"cache {root} (ADS_CACHE_DIR moves it)")
    print(f"{'kind':<10} {'key':<24} {'size MB':>8}  {'last used':<16}  {'data':<16}  source")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.used))
        print(f"{e.kind:<10} {e.key:<24} {e.size_bytes / 1e6:>8.1f}  {used:<16}  {e.data or '-':<16}  "
              f"{e.source or '-'}")
    total, n = sum(e.size_bytes for e in entries), len(entries)
    print(f"total {total / 1e6:.1f} MB in {n} entr{'ies' if n != 1 else 'y'}; "
          f"`python -m distill_core cache --clear [KEY]` deletes them (or one)")
    return 0


def make_parser(extend=None, prog: str = "python -m distill_core") -> argparse.ArgumentParser:
    """The engine's commands; `extend(subparsers, runs_dir)` adds or changes commands (the app's command line adds
    the ones that draw with the app's figures)."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Distil a teacher transformer into a small student and record "
                                            "how their attention compares.")
    sub = p.add_subparsers(dest="command", required=True)
    runs_dir = {"default": None, "help": "run store folder (default: $ADS_RUNS_DIR or ./runs)"}

    r = sub.add_parser("run", help="run a session (the offline default unless told otherwise)")
    r.add_argument("--config", help="YAML or JSON file of settings (sections teacher, student, data, objectives, train)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any setting, e.g. --set train.epochs=2 --set variants.distilled.losses.attention_mse=1 "
                        "(a new variant name adds a variant)")
    r.add_argument("--task", choices=list(TASKS),
                   help="the kind of task: text classification, images, token tagging (named entities), translation "
                        "or language_model (a causal GPT-style model); auto (default): images or text by the data")
    r.add_argument("--data", help="'rotten_tomatoes' (default), a .csv/.jsonl file, or a hub dataset name; images: "
                                  "'mnist', 'fashion_mnist', 'sklearn_digits', or a folder or .zip of class folders")
    r.add_argument("--text-column")
    r.add_argument("--label-column")
    r.add_argument("--teacher", help="'default', a local model folder, or a hub id; images: 'cnn' or 'vit' (built "
                                     "and trained here once, then cached)")
    r.add_argument("--student-layers", type=int)
    r.add_argument("--student-heads", type=int)
    r.add_argument("--student-hidden", type=int)
    r.add_argument("--train-size", type=int)
    r.add_argument("--epochs", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--lr", type=float)
    r.add_argument("--seed", type=int)
    r.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    r.add_argument("--time-budget", type=float, help="seconds; stop training when exceeded")
    r.add_argument("--no-baseline", action="store_true", help="leave out the labels-only variant named baseline")
    r.add_argument("--name", help="a label for the run")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--runs-dir", **runs_dir)
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", parents=[r], add_help=False,
                        help="run the same session once per seed and compare the variants across seeds")
    sw.add_argument("--seeds", required=True, help="students' seeds (train.seed), e.g. 0-4 or 0,1,2")
    sw.add_argument("--against", metavar="VARIANT",
                    help="also compare every variant with this one (e.g. kd_att: does a strategy added to plain KD "
                         "help?), besides the labels-only reference")
    sw.set_defaults(func=cmd_sweep)

    sws = sub.add_parser("sweeps", help="list sweeps, or show one")
    sws.add_argument("--runs-dir", **runs_dir)
    sws.add_argument("--show", metavar="SWEEP_ID", help="print one sweep's summary, read again from its runs")
    sws.add_argument("--against", metavar="VARIANT", help="with --show: also compare every variant with this one")
    sws.set_defaults(func=cmd_sweeps)

    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--runs-dir", **runs_dir)
    ls.set_defaults(func=cmd_runs)

    sh = sub.add_parser("show", help="one run's summary")
    sh.add_argument("run_id")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--runs-dir", **runs_dir)
    sh.set_defaults(func=cmd_show)


    rb = sub.add_parser("robustness", help="accuracy of a finished run's models under an attack on the word "
                                           "embeddings (about a minute on a CPU)")
    rb.add_argument("run_id")
    rb.add_argument("--epsilons", default=",".join(f"{e:g}" for e in EPSILONS), metavar="E1,E2",
                    help="perturbation sizes, relative to each token's embedding norm (default: %(default)s)")
    rb.add_argument("--steps", type=int, default=STEPS, help="PGD steps per epsilon (default: %(default)s)")
    rb.add_argument("--limit", type=int, default=LIMIT,
                    help="test examples used, the first ones in split order (default: %(default)s)")
    rb.add_argument("--runs-dir", **runs_dir)
    rb.set_defaults(func=cmd_robustness)

    lt = sub.add_parser("latency", help="time a finished run's teacher and students again (interleaved, one thread, "
                                        "median of 50 rounds; the pages show the latest)")
    lt.add_argument("run_id")
    lt.add_argument("--runs-dir", **runs_dir)
    lt.set_defaults(func=cmd_latency)

    cp = sub.add_parser("compress", help="int8 and head-pruned versions of a finished run's students: size, "
                                         "latency, test accuracy and attention JS of each (tens of seconds a "
                                         "variant on a CPU)")
    cp.add_argument("run_id")
    cp.add_argument("--variant", action="append", metavar="NAME",
                    help="compress this variant (repeat for more) and the run's labels-only reference, for the "
                         "pruning curves; default: every variant")
    cp.add_argument("--fractions", metavar="F1,F2",
                    help="shares of the attention heads to prune, each in [0, 1) (default: "
                         "0,0.1,0.25,0.5,0.75)")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp.add_argument("--runs-dir", **runs_dir)
    cp.set_defaults(func=cmd_compress)

    ex = sub.add_parser("export", help="a trained student as a Hugging Face model folder (safetensors weights, "
                                       "config, tokenizer and a model card) that transformers' pipeline loads")
    ex.add_argument("run_id")
    ex.add_argument("out_dir", help="the folder to write (new, or empty unless --overwrite)")
    ex.add_argument("--variant", default="distilled", help="the student variant to export (default: %(default)s)")
    ex.add_argument("--weights", choices=list(WEIGHTS), default="final",
                    help="the last finished epoch's weights, or the best epoch's by validation score "
                         "(default: %(default)s)")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace the files of a model folder already in OUT_DIR (other files stay)")
    ex.add_argument("--push-to-hub", metavar="REPO_ID",
                    help="also upload the folder to this Hub model repository (online, with a token: hf auth login "
                         "or HF_TOKEN); created private when it does not exist")
    ex.add_argument("--public", action="store_true", help="with --push-to-hub: create the repository public")
    ex.add_argument("--runs-dir", **runs_dir)
    ex.set_defaults(func=cmd_export)

    c = sub.add_parser("cancel", help="ask a running session to stop (keeps finished epochs)")
    c.add_argument("run_id")
    c.add_argument("--runs-dir", **runs_dir)
    c.set_defaults(func=cmd_cancel)

    d = sub.add_parser("delete", help="delete a finished run")
    d.add_argument("run_id")
    d.add_argument("--runs-dir", **runs_dir)
    d.set_defaults(func=cmd_delete)

    k = sub.add_parser("cache", help="list the cached teachers and teacher outputs, or clear them")
    k.add_argument("--clear", nargs="?", const=ALL, default=None, metavar="KEY",
                   help="delete every entry, or only KEY (a key or the start of one, as listed)")
    k.set_defaults(func=cmd_cache)
    if extend is not None:
        extend(sub, runs_dir)
    return p


def check_processes(command: str) -> None:
    """Only `run` trains across several processes; started so, any other command is refused."""
    if distributed.active() and command != "run":
        raise DistillError(f"only `run` runs across several processes (accelerate launch, torchrun); start "
                           f"`python -m distill_core {command}` as one process")
    warning = distributed.launch_warning()
    if warning:
        logging.getLogger(__name__).warning(warning)


def main(argv=None, extend=None, prog: str = "python -m distill_core") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault(ORIGIN_ENV, f"the command line ({prog.split()[-1]})")
    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = make_parser(extend, prog).parse_args(argv)
    try:
        check_processes(args.command)
        return args.func(args)
    except DistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the run keeps its finished epochs", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line on the terminal; the run's status.json keeps the traceback
        text = str(e)
        if isinstance(e, MemoryError) or "out of memory" in text.lower():
            print(f"error: out of memory; try a smaller --batch-size or --set data.max_length=...  ({text[:200]})",
                  file=sys.stderr)
        else:
            print(f"error: {type(e).__name__}: {text[:300]} (the run's status.json has the details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
