"""The studio's command line: every engine command (`python -m distill_core ...`), plus what draws with the app's
figures, which the engine does not import.

    python -m app report RUN_ID [--out FILE] [--examples 0,1]   one run as a single HTML page that opens offline
    python -m app sweep --seeds 0-2 [run options]                the engine's sweep, and sweep.html beside sweep.json
    python -m app sweeps --html SWEEP_ID                         sweep.html of a sweep written before
"""
from __future__ import annotations

import sys
from pathlib import Path

from app.figures.sweep import sweep_figure
from app.report import default_heatmaps, write_report
from distill_core import __main__ as engine
from distill_core.errors import DistillError
from distill_core.store import RunStore, atomic_write_bytes
from distill_core.sweep import SweepStore, summarize_sweep

PROG = "python -m app"


def write_sweep_html(folder: Path, summary: dict) -> Path:
    """The sweep's figure as a page that works offline (plotly.js inside), in the sweep's folder."""
    path = Path(folder) / "sweep.html"
    html = sweep_figure(summary).to_html(include_plotlyjs=True, full_html=True)
    atomic_write_bytes(path, html.encode())
    print(f"written: {path}")
    return path


def cmd_sweep(args) -> int:
    return engine.cmd_sweep(args, after=write_sweep_html)


def cmd_sweeps(args) -> int:
    if not args.html:
        return engine.cmd_sweeps(args)
    sweeps = SweepStore(args.runs_dir)
    write_sweep_html(sweeps.folder(args.html), summarize_sweep(sweeps.runs, sweeps.open(args.html)))
    return 0


def parse_examples(text: str | None) -> list[int] | None:
    """--examples "0,2" -> [0, 2]; None when not given."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DistillError(f"--examples takes probe example numbers separated by commas (e.g. 0,2), "
                           f"not {text!r}") from None


def cmd_report(args) -> int:
    """One run as a single HTML page that opens offline (app/report.py draws it with the app's figures)."""
    run = RunStore(args.runs_dir).open(args.run_id)
    examples = parse_examples(args.examples)
    out = Path(args.out) if args.out else run.path / "report.html"
    if out.is_dir():
        out = out / f"{run.id}-report.html"
    print(write_report(run, out, default_heatmaps(run, examples)))
    return 0


def add_commands(sub, runs_dir: dict) -> None:
    """The engine's commands, with `report` added and the sweep commands drawing sweep.html."""
    rp = sub.add_parser("report", help="write one run as a single HTML page that opens offline")
    rp.add_argument("run_id")
    rp.add_argument("--out", metavar="FILE", help="where to write it (default: report.html in the run's folder)")
    rp.add_argument("--examples", metavar="I,J", help="probe examples whose heatmaps it shows (default: 0,1)")
    rp.add_argument("--runs-dir", **runs_dir)
    rp.set_defaults(func=cmd_report)
    sub.choices["sweep"].set_defaults(func=cmd_sweep)
    sub.choices["sweeps"].add_argument("--html", metavar="SWEEP_ID", help="write the sweep's figure as sweep.html")
    sub.choices["sweeps"].set_defaults(func=cmd_sweeps)


def main(argv=None) -> int:
    return engine.main(argv, extend=add_commands, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
