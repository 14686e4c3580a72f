"""What every AppTest of a page does: open it, run it, fail on any exception the page raised, read its texts."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

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


def figures(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures as JSON, by chart key."""
    return {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def values(data) -> np.ndarray:
    """A plotly JSON array: a plain list, or numpy's typed-array encoding {"dtype", "bdata", "shape"}."""
    if isinstance(data, dict):
        arr = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        shape = data.get("shape")
        return arr.reshape([int(x) for x in str(shape).split(",")]) if shape else arr
    return np.asarray(data, dtype=float)
