"""Helpers shared by the web page tests (constants and page actions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
ARTIFACTS = ROOT / "test-artifacts"
from convert.parity.browser import CHROMIUM_ARGS  # noqa: F401 - the flags the parity engine uses
COURSE_ROW = [6.0, 250.0, 66.5]
LABELS = [
    "Number of rooms",
    "Property tax rate per $10,000",
    "Proportion of buildings built before 1940",
]


def open_ready(pg: Any, url: str) -> None:
    """Navigate and wait until the model is loaded and warmed up."""
    pg.goto(url)
    pg.wait_for_selector("body[data-state=ready]")


def fill_row(pg: Any, row: list[float] | list[str]) -> None:
    for label, value in zip(LABELS, row):
        pg.get_by_label(label, exact=True).fill(str(value))


def prediction(pg: Any) -> float:
    """The number the page shows (text, not a hidden attribute)."""
    pg.wait_for_selector("#prediction[data-value]")
    text = pg.inner_text("#prediction")
    return float(text.split(":", 1)[1].strip())
