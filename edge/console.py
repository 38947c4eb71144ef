"""Presentation for both command lines, ``deploykit`` and ``deploykit-edge``: one home for what they show.

- :func:`print_line`: one line of text with its control characters escaped (``edge.text.printable``);
- :class:`ArgumentParser`: usage errors as one ``Error:`` line, exit 2;
- :func:`run_command`: the one ``main()`` policy: a library error (``EdgeError``, which ``DeployKitError``
  subclasses) is one line ``Error: <message>`` and exit 1, a Ctrl+C is ``Error: interrupted`` and exit 130,
  a closed pipe (``| head``) exit 0, anything else one ``Error: unexpected ...`` line; never a traceback;
- :func:`rich_console`, :func:`safe`, :func:`steps`, :func:`print_table`: progress lines and tables on a Rich
  console, for the converter's commands.

Rich is optional here: it is imported only by the Rich helpers, which the edge runner never calls (a Pi has
no Rich). Nothing happens on import.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any, Callable, Iterator, NoReturn, Sequence, TextIO

from edge.errors import EdgeError
from edge.text import printable

EXIT_ERROR = 1
EXIT_USAGE = 2  # a command line argparse cannot take, as argparse itself exits
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl+C
INTERRUPTED = "Error: interrupted"

Step = Callable[[str], None]


def print_line(line: str, file: TextIO | None = None, flush: bool = False) -> None:
    """Print one line with its control characters escaped: manifest strings (names, labels, units, notes,
    paths) and input cells are data, not terminal commands, and cannot split the line."""
    print(printable(line), file=file if file is not None else sys.stdout, flush=flush)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line, as every other error of the CLIs:
    ``Error: <what argparse found>; see `<prog> --help``` on stderr, exit 2 (not the usage block). Its
    sub-command parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        print_line(f"Error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def run_command(command: Callable[[], int], unexpected: Callable[[Exception], str],
                interrupted: Callable[[], bool] = lambda: False, debug: bool = False) -> int:
    """Run ``command`` and return the exit status, printing at most one ``Error:`` line on stderr.

    ``unexpected(exc)`` words the line for an exception that is not a library error (each CLI says where to
    look); ``interrupted()`` says whether an exception is really a Ctrl+C a library swallowed; ``debug`` lets
    such an exception's traceback through (``DEPLOYKIT_DEBUG=1``). Raises only with ``debug``.
    """
    try:
        return int(command() or 0)
    except KeyboardInterrupt:
        print_line(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback
        if interrupted():
            print_line(INTERRUPTED, file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, EdgeError):
            print_line(f"Error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, BrokenPipeError):  # the reader went away (``| head``): nothing left to say
            return 0
        if debug:
            raise
        print_line(f"Error: {unexpected(exc)}", file=sys.stderr)
        return EXIT_ERROR


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, at most ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]


# ---------------------------------------------------------------- Rich: progress and tables (converter only)

def rich_console(stream: TextIO) -> Any:
    """A Rich console on ``stream``; off a terminal (logs, pipes) 160 columns wide, so table rows stay on one line."""
    from rich.console import Console

    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 160
    return console


def safe(value: Any) -> str:
    """A string for a Rich console: control characters escaped (``edge.text.printable``) and Rich markup
    escaped, so that text from a bundle or a model (``[/bold]`` in a feature name) prints as itself."""
    from rich.markup import escape

    return escape(printable(value))


@contextlib.contextmanager
def steps(console: Any, check: Callable[[], None] = lambda: None) -> Iterator[Step]:
    """A progress callback: each call closes the previous step (one ``✓ name (seconds)`` line) and starts a
    new one, shown with a spinner on a terminal. ``check`` runs at every step (the converter raises a
    Ctrl+C a library swallowed there)."""
    state: dict[str, Any] = {"name": None, "start": 0.0}

    def advance(name: str, done: Callable[[str], None], show: Callable[[str], None]) -> None:
        check()
        name = safe(name)
        now = time.perf_counter()
        if state["name"] is not None:
            done(f"{state['name']} ({now - state['start']:.1f}s)")
        state.update(name=name, start=now)
        show(name)

    def finish(done: Callable[[str], None]) -> None:
        if state["name"] is not None:
            done(f"{state['name']} ({time.perf_counter() - state['start']:.1f}s)")

    if not console.is_terminal:  # logs and pipes: plain lines (a spinner would leave a blank line behind)
        def plain(line: str) -> None:
            console.print(f"✓ {line}")

        yield lambda name: advance(name, plain, lambda _: None)
        finish(plain)
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def green(line: str) -> None:
            progress.console.print(f"[green]✓[/] {line}")

        yield lambda name: advance(name, green, lambda shown: progress.update(task, description=shown))
        finish(green)


def print_table(console: Any, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                folded: str | None = None) -> None:
    """A table of ``rows`` (cells already made ``safe`` or styled); ``folded`` is a last column that wraps."""
    from rich.table import Table

    table = Table(title=safe(title), title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=True)
    if folded:
        table.add_column(folded, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
