"""The studio's command line: every engine command (`python -m distill_core ...`), plus what draws with the app's
figures, which the engine does not import.

    python -m app report RUN_ID [--out FILE] [--examples 0,1]   one run as a single HTML page that opens offline
    python -m app sweep --seeds 0-2 [run options]                the engine's sweep, and sweep.html beside sweep.json
    python -m app sweeps --html SWEEP_ID                         sweep.html of a sweep written before
    python -m app serve [--port 8501] [--address 0.0.0.0]        the app for a class (make serve), see app/roles.py
"""
from __future__ import annotations

import os
import secrets
import socket
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


def network_address() -> str:
    """This machine's address on its network (the interface a packet out would leave by; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


def serve_command(address: str, port: int) -> list[str]:
    app = Path(__file__).resolve().parent / "streamlit_app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", address, "--server.port",
            str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]


def cmd_serve(args) -> int:
    """The app on the network for a class: viewers by default, the instructor with the token. A token is made when
    ADS_INSTRUCTOR_TOKEN is not set; either way it goes to this terminal only, never to the app's log or pages."""
    from app.roles import TOKEN_ENV, TOKEN_PARAM        # Streamlit is loaded for this command only
    token = os.environ.get(TOKEN_ENV, "").strip()
    made = not token
    if made:
        token = secrets.token_urlsafe(12)
    host = network_address() if args.address in ("0.0.0.0", "::") else args.address
    base = f"http://{host}:{args.port}/"
    print(f"The class opens   {base}\n"
          f"You open          {base}?{TOKEN_PARAM}={token}   (or enter the token in the sidebar)\n"
          + (f"Instructor token  {token}   (made now; set {TOKEN_ENV} to choose your own)\n" if made else "")
          + "Visitors are viewers: they explore every run and page and type their own sentences; only the "
            "instructor starts, cancels, deletes, uploads, compresses and measures.", flush=True)
    os.chdir(Path(__file__).resolve().parent.parent)        # where .streamlit/config.toml is read from
    os.execvpe(sys.executable, serve_command(args.address, args.port), {**os.environ, TOKEN_ENV: token})


def add_commands(sub, runs_dir: dict) -> None:
    """The engine's commands, with `report` added and the sweep commands drawing sweep.html."""
    rp = sub.add_parser("report", help="write one run as a single HTML page that opens offline")
    rp.add_argument("run_id")
    rp.add_argument("--out", metavar="FILE", help="where to write it (default: report.html in the run's folder)")
    rp.add_argument("--examples", metavar="I,J", help="probe examples whose heatmaps it shows (default: 0,1)")
    rp.add_argument("--runs-dir", **runs_dir)
    rp.set_defaults(func=cmd_report)
    sp = sub.add_parser("serve", help="serve the app to a class on the network, with an instructor token")
    sp.add_argument("--address", default="0.0.0.0", help="the address to listen on (default: every interface)")
    sp.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8501))
    sp.set_defaults(func=cmd_serve)
    sub.choices["sweep"].set_defaults(func=cmd_sweep)
    sub.choices["sweeps"].add_argument("--html", metavar="SWEEP_ID", help="write the sweep's figure as sweep.html")
    sub.choices["sweeps"].set_defaults(func=cmd_sweeps)


def main(argv=None) -> int:
    return engine.main(argv, extend=add_commands, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
