"""The `featx` command line: parses options, calls the Python API, prints; nothing more.

featx.cli.commands declares the group and the data commands, featx.cli.models the ones
that train and score models, featx.cli.options the options they share;
here is the entry point, which turns every error a user can cause into one line.
"""
from __future__ import annotations

import os
import signal
import sys

_INTERRUPTED_LINE = "featx: interrupted; an extraction keeps its committed rows: rerun the same command to continue"


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before `main` runs (while click, numpy and featx's modules import): nothing is open
    yet, so the one line and exit 130 at once, instead of a KeyboardInterrupt traceback."""
    os.write(2, ("\n" if os.isatty(2) else "").encode() + (_INTERRUPTED_LINE + "\n").encode())  # after the ^C echo
    os._exit(130)


def _is_the_featx_command() -> bool:
    """True in the `featx` script and `python -m featx`, not when a program imports featx.cli."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) == "featx" or program.endswith(os.path.join("featx", "__main__.py"))


# First, before the heavy imports below: the start-up window of a Ctrl-C is theirs.
if _is_the_featx_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import threading
import warnings
from typing import Any

import click

from featx.cli import models, registry  # noqa: F401  (register train, evaluate, finetune, bench; heads, modalities)
from featx.cli.commands import cli
from featx.cli.options import flag_name
from featx.errors import FeatxError, FeatxWarning, ParameterError, describe_os_error

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2 (130 for Ctrl-C)."""
    # h5py reports errors met while tearing objects down (after a failed write, say) as
    # "Exception ignored" tracebacks; the error that matters has already been raised.
    sys.unraisablehook = _quiet_unraisable
    warnings.showwarning = _one_line_warning
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _interrupted_while_starting):
        signal.signal(signal.SIGINT, _on_interrupt)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_terminate)
    try:
        # Not cli.main(): on Ctrl-C it prints a blank line of its own, a second line on stderr.
        with cli.make_context("featx", list(sys.argv[1:] if argv is None else argv)) as context:
            result = cli.invoke(context)
    except ParameterError as e:
        _fail(e.for_flag())
    except FeatxError as e:
        _fail(str(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except _NO_ARGS_IS_HELP as e:  # a bare `featx` (or group): the help itself, not an error
        click.echo(e.ctx.get_help() if e.ctx else cli.get_help(click.Context(cli, info_name="featx")))
        sys.exit(0)
    except click.BadParameter as e:  # one value refused at parsing: said as the library says it
        _fail(_bad_value(e), e.exit_code)
    except click.ClickException as e:
        _fail(f"{e.format_message()} (see featx --help)", e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _interrupted()
    except _Terminated:
        _release_worker_pool()
        click.echo(_INTERRUPTED_LINE.replace("interrupted", "terminated"), err=True)
        _exit_now(128 + signal.SIGTERM)
    except EOFError as e:
        _fail(f"unexpected end of input ({e or 'a file ended early'})")
    except BrokenPipeError:
        _reader_went_away()
    except OSError as e:
        # A fault of the machine (disk full, read-only, I/O error) that no library layer named.
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        _fail(f"{describe_os_error(e)}{where}")
    sys.exit(result if isinstance(result, int) else 0)


# click >= 8.2 raises this for a group called without a command; older clicks print help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _bad_value(error: click.BadParameter) -> str:
    """'--window-rows must be an integer >= 1, got 0', the form of featx's own ParameterError."""
    if isinstance(error, click.MissingParameter):
        return f"{error.format_message()} (see featx --help)"
    if error.param is not None:
        name = flag_name(error.param)
    else:
        name = str(error.param_hint or "").strip("'\"")
    message = error.message.rstrip(".")
    message = message[:1].lower() + message[1:]
    return f"{name} {message}" if name else error.format_message()


def _exit_now(code: int) -> None:
    """Exit at once, past interpreter shutdown. Every store, head and output is closed by now
    (the `finally` blocks and `with` statements ran while the exception rose). After a Ctrl-C
    during extraction, a normal exit ended the process by SIGINT instead of with `code` in
    about one run in four (the cause lies in interpreter shutdown and was not pinned down);
    tests/faults/test_locks_and_signals.py holds the exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_INTERRUPT = threading.Event()


def _on_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: remembered, then raised as Python does. A library that catches the KeyboardInterrupt
    and raises its own error (transformers' lazy imports do) still ends as an interrupt. One that
    arrives while torch's modules are being imported is asked again 50 ms later instead: raised
    inside torch's C++ start-up, the KeyboardInterrupt aborted the process ("terminate called after
    throwing an instance of 'pybind11::error_already_set'")."""
    _INTERRUPT.set()
    if _importing_torch(frame):
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    signal.default_int_handler(signum, frame)


def _importing_torch(frame: Any) -> bool:
    """Whether `frame` or a frame below it runs a torch module's top level (an import of torch)."""
    torch_folder = f"{os.sep}torch{os.sep}"
    while frame is not None:
        if frame.f_code.co_name == "<module>" and torch_folder in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class _Terminated(BaseException):
    """SIGTERM (`kill`, a scheduler stopping the job), raised where the main thread is, so the command
    unwinds as after a Ctrl-C: stores keep their committed rows, outputs being written are removed,
    and joblib stops the worker processes of `featx train --jobs N` (it aborts its pool on any
    exception; killed outright, the command left them running, orphaned, until their heads ended)."""


def _on_terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def _release_worker_pool() -> None:
    """After an interrupt, before an exit that skips interpreter shutdown (_exit_now): joblib's worker
    pool (featx train --jobs N; its workers are already stopped) is shut down and multiprocessing's
    exit finalizers run, which unlink the pool's semaphores. Skipped, loky's resource tracker (a
    process of its own) printed "There appear to be 3 leaked semlock objects" after featx's line."""
    if "joblib" not in sys.modules:
        return
    import multiprocessing.util

    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor  # loky's one reusable pool, when one was started
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)
    multiprocessing.util._run_finalizers(0)  # type: ignore[attr-defined]  # what a normal exit runs first


def _interrupted() -> None:
    _release_worker_pool()
    if sys.stderr.isatty():
        click.echo(err=True)  # end the line the terminal's ^C echo started
    click.echo(_INTERRUPTED_LINE, err=True)
    _exit_now(130)


def _reader_went_away() -> None:
    """The reader of standard output closed it (`featx predict ... | head -1`): no error of the
    user's, so no message; exit as a Unix tool ended by SIGPIPE reports (128 + 13). What is
    still buffered for stdout goes to /dev/null, so that flushing it cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    _exit_now(128 + signal.SIGPIPE)


def _fail(message: str, code: int = 2) -> None:
    if _INTERRUPT.is_set():  # the error is what the interrupt became on its way up
        _interrupted()
    click.echo(f"featx: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    """featx's own warnings as one line on stderr; others as Python shows them."""
    if issubclass(category, FeatxWarning):
        click.echo(f"featx: warning: {' '.join(str(message).split())}", err=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def _quiet_unraisable(unraisable: Any) -> None:
    import traceback

    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    if "h5py" in repr(unraisable.object) or any("h5py" in frame.filename for frame in frames):
        return
    sys.__unraisablehook__(unraisable)
