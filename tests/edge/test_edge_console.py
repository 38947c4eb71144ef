"""edge/console.py: the one main() policy of deploykit and deploykit-edge, and its escaping."""

from __future__ import annotations

import pytest

from edge import console
from edge.errors import EdgeError


def _raise(exc: BaseException):
    def command() -> int:
        raise exc
    return command


def _unexpected(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__}: {exc}; please report it"


@pytest.mark.parametrize(("exc", "status", "err"), [
    (KeyboardInterrupt(), 130, "Error: interrupted\n"),
    (EdgeError("bad \x1b[2J bundle"), 1, "Error: bad \\x1b[2J bundle\n"),
    (BrokenPipeError(), 0, ""),
    (ValueError("odd"), 1, "Error: unexpected ValueError: odd; please report it\n"),
])
def test_run_command_prints_one_line_and_exits_with_the_policy(exc, status, err, capsys) -> None:
    assert console.run_command(_raise(exc), _unexpected) == status
    assert capsys.readouterr() == ("", err)


def test_an_error_a_swallowed_ctrl_c_caused_is_an_interrupt(capsys) -> None:
    assert console.run_command(_raise(RuntimeError("Identity is not in graph")), _unexpected,
                               interrupted=lambda: True) == 130
    assert capsys.readouterr().err == "Error: interrupted\n"


def test_debug_lets_an_unexpected_error_through() -> None:
    with pytest.raises(ValueError):
        console.run_command(_raise(ValueError("odd")), _unexpected, debug=True)


def test_deploykit_edge_reports_a_ctrl_c_as_deploykit_does(monkeypatch, capsys) -> None:
    """deploykit-edge follows the one interrupt policy: a Ctrl+C prints "Error: interrupted" and exits 130."""
    from edge import cli

    def stop(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", stop)
    assert cli.main(["info", "nowhere"]) == 130
    assert capsys.readouterr().err == "Error: interrupted\n"


@pytest.mark.parametrize("module, argv, line", [
    ("edge", ["serve", "b", "--max-body", "abc"],
     "Error: argument --max-body: invalid int value: 'abc'; see `deploykit-edge serve --help`"),
    ("edge", [], "Error: the following arguments are required: COMMAND; see `deploykit-edge --help`"),
    ("edge", ["predict", "b", "--input", "x", "--bogus\x1b[2J"],
     "Error: unrecognized arguments: --bogus\\x1b[2J; see `deploykit-edge --help`"),
    ("edge", ["drift", "log", "--bundle", "b", "--alpha", "5"],
     "Error: argument --alpha: '5' is not a probability: pass a number between 0 and 1, such as 0.01; "
     "see `deploykit-edge drift --help`"),
    ("edge", ["drift", "log", "--bundle", "b", "--last", "-5"],
     "Error: argument --last: '-5' is not a positive whole number; see `deploykit-edge drift --help`"),
    ("edge", ["serve", "b", "--forwarded-allow-ips", "10.0.0.1,not-an-ip"],  # a typo trusted nobody, silently
     "Error: argument --forwarded-allow-ips: 'not-an-ip' is not an IP address or network: pass addresses such as "
     "127.0.0.1,10.0.0.0/8, or *; see `deploykit-edge serve --help`"),
    ("convert", ["convert", "m.keras"],
     "Error: the following arguments are required: --data, --out; see `deploykit convert --help`"),
    ("convert", ["train", "--seed", "x", "--out", "m.keras"],
     "Error: argument --seed: invalid int value: 'x'; see `deploykit train --help`"),
])
def test_usage_errors_are_one_line_and_exit_2(module: str, argv: list[str], line: str) -> None:
    """argparse printed its whole usage block (15 lines for `serve`) above its error."""
    from helpers import run_cli

    r = run_cli(*argv, module=module)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", line + "\n")
