"""What a person sees on the terminal: progress and warnings on stderr, each one line
(`warning: ...`), with the characters of user data that are not printable escaped, and
the warnings of the libraries underneath (scikit-learn, numpy, pandas) said the same way;
errors, the usage errors of click included, as one line `error: ...` and an exit code.
Used by the CLI and the pipeline scripts."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from trafficsiam.errors import TrafficSiamError, printable


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = one_line(record.getMessage())
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


def setup_logging(quiet: bool) -> None:
    """The package's messages on stderr, one line each (progress only unless `quiet`),
    and Python's warnings routed to them."""
    logger = logging.getLogger("trafficsiam")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    warnings.showwarning = _show_warning


def one_line(text: str) -> str:
    """Line breaks and control characters from data (a column named 'a\nb', a terminal
    escape sequence) escaped: a message is always one line that cannot drive a terminal."""
    return printable(text)


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """A library's warning (sklearn, numpy, pandas) as one `warning:` line naming its
    kind, not Python's two lines with a source excerpt."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    logging.getLogger("trafficsiam").warning("%s from %s: %s", category.__name__,
                                             Path(filename).parent.name or filename, first)


# --- errors: one line and an exit code (the CLI's commands and group) ---------------

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1  # an unexpected error; a TrafficSiamError carries its own code
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, what schedulers and service managers send to stop a job: handled as Ctrl-C
    is (every clean-up that Ctrl-C runs), with its own exit code."""


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises `Terminated` in the main thread (by default it ended the
    process at once, leaving work folders for the next run to remove)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(func: F) -> F:
    """Turn domain errors into one line and an exit code; no traceback unless --debug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            with terminated_as_interrupt():
                return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException):
            raise  # deliberate exit codes and usage errors: click reports them
        except TrafficSiamError as err:
            if debug:
                raise
            click.echo(f"error: {one_line(str(err))}", err=True)
            ctx.exit(err.exit_code)
        except Terminated:
            click.echo("error: terminated (SIGTERM); nothing was written", err=True)
            ctx.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            click.echo("error: interrupted; nothing was written", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except MemoryError:
            click.echo("error: out of memory; lower cluster.max_points or the input size", err=True)
            ctx.exit(EXIT_FAILURE)
        except Exception as err:  # noqa: BLE001 - the last line of defence for users
            if debug:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            click.echo(
                f"error: unexpected {type(err).__name__}: {first} "
                "(rerun with --debug for the traceback and report it)",
                err=True,
            )
            ctx.exit(EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


class _OneLineUsage(click.UsageError):
    """A usage error as every other error: one line on stderr, exit 2 (click prints the
    usage, a hint and the message on three)."""

    def __init__(self, err: click.UsageError) -> None:
        super().__init__(err.format_message(), err.ctx)

    def show(self, file: Any = None) -> None:
        where = self.ctx.command_path if self.ctx is not None else "trafficsiam"
        message = one_line(self.format_message()).rstrip(".")
        click.echo(f"error: {message}; see '{where} --help'", err=True)


class OneLineGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `trafficsiam` alone: the help, as asked
        except click.UsageError as err:
            raise _OneLineUsage(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (_OneLineUsage, click.exceptions.NoArgsIsHelpError):
            raise
        except click.UsageError as err:
            raise _OneLineUsage(err) from None
