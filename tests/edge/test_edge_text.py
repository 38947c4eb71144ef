"""Text from a bundle is data: control characters and Rich markup from a manifest print as themselves."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edge.text import printable
from edge_helpers import PYTHON, rewrite_manifest, run

EVIL_TITLE = "\x1b]0;pwned\x07"  # sets the terminal's window title
CLEAR = "\x1b[2J\x1b[H"  # clears the screen


@pytest.mark.parametrize("text, shown", [
    ("plain [ok]", "plain [ok]"), (EVIL_TITLE, "\\x1b]0;pwned\\x07"), ("a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"),
    ("\x9b31m", "\\x9b31m"), ("abc\u202edcb", "abc\\u202edcb"), ("\x7f", "\\x7f"), (3.5, "3.5"), ("é ü 漢", "é ü 漢"),
])
def test_printable(text: object, shown: str) -> None:
    assert printable(text) == shown


def test_info_escapes_manifest_strings(bundle_copy: Path) -> None:
    """`deploykit-edge info` printed a manifest's escape sequences raw (window title, clear screen)."""
    def change(m: dict) -> None:
        m["features"][0]["label"] = f"rooms{EVIL_TITLE}"
        m["features"][0]["unit"] = f"{CLEAR}[/bold]"
        m["outputs"][0]["name"] = "price\nFAKE LINE"

    rewrite_manifest(bundle_copy, change)
    r = run([PYTHON, "-m", "edge", "info", str(bundle_copy)])
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "  feature rm: rooms\\x1b]0;pwned\\x07 \\x1b[2J\\x1b[H[/bold], training range" in r.stdout
    assert "  output price\\x0aFAKE LINE (key " in r.stdout
    assert not any(line.startswith("FAKE LINE") for line in r.stdout.splitlines())
    info = json.loads(run([PYTHON, "-m", "edge", "info", str(bundle_copy), "--json"]).stdout)
    assert info["features"][0]["label"] == f"rooms{EVIL_TITLE}"  # JSON keeps the data (escaped by json)


def test_verify_table_and_steps_print_markup_as_text() -> None:
    """A feature name with `[/bold]` made `deploykit verify` raise MarkupError before its table."""
    from rich.console import Console

    from convert.parity.report import ParityReport, Result
    from convert.show import print_artifacts, print_report
    from edge.console import steps

    buf = io.StringIO()
    console = Console(file=buf, highlight=False, soft_wrap=False, width=300)
    result = Result(artifact="edge/m[/bold].tflite", format="tflite", variant="float32", runtime=f"litert{CLEAR}",
                    bytes=10, tolerance={}, passed=False, failures=["output [red]x[/] over tolerance \x1b]0;t\x07"])
    report = ParityReport(bundle=Path("/b[/]"), name="n", runtimes=["litert"], reference="keras [bold]",
                          results=[result], at="now")
    print_report(console, report)
    print_artifacts(console, [{"artifact": "[/]a", "format": "f", "variant": "v", "bytes": 1, "note": "[link=x]n"}],
                    "Bundle [/bold]")
    with steps(console) as step:
        step("Checking [/bold] \x1b[2J")
    text = buf.getvalue()
    for shown in ("edge/m[/bold].tflite", "litert\\x1b[2J\\x1b[H", "output [red]x[/] over tolerance \\x1b]0;t\\x07",
                  "Parity of /b[/] against keras [bold]", "[/]a", "[link=x]n", "Bundle [/bold]",
                  "✓ Checking [/bold] \\x1b[2J"):
        assert shown in text, shown
    assert "\x1b" not in text
