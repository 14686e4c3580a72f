"""What every AppTest of a page does: open it, run it, fail on any exception the page raised, read its texts."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

VIEWS = Path(__file__).resolve().parent.parent / "app" / "views"


def run_app(at: AppTest, timeout: float | None = None) -> AppTest:
    """Run (or rerun) the page; no exception may reach the page."""
    at.run(timeout=timeout)
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(file: str | Path, query: dict | None = None, default_timeout: float = 3,
              timeout: float | None = None) -> AppTest:
    """A page file run once, with `query` as its URL's query parameters."""
    at = AppTest.from_file(str(file), default_timeout=default_timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return run_app(at, timeout)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
