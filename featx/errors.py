"""Typed errors for mistakes a user can fix, and for files that are not what they claim.

Every class is a `FeatxError`: the CLI prints it as one line ``featx: error: <message>``
and exits with status 2, so the message must say what went wrong and how to fix it.
Library callers can catch the narrower types.
"""
from __future__ import annotations

import errno


class FeatxError(Exception):
    """A problem the user caused and can fix (bad file, wrong column, mismatched store)."""


class ParameterError(FeatxError, ValueError):
    """A parameter has a value featx cannot use; `param` names it (as in the Python API).

    The CLI shows the parameter as its flag: ``max_length`` becomes ``--max-length``.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param} {message}")

    def for_flag(self) -> str:
        return f"--{self.param.replace('_', '-')} {self.message}"


class InputError(FeatxError):
    """An input file cannot be read as asked (encoding, corrupt compression, bad rows)."""


class DamagedError(FeatxError):
    """A store, head or predictor on disk is not what it claims to be; nothing is guessed."""


class OutputError(FeatxError):
    """Something cannot be written where the user asked (full disk, read-only, path conflict)."""


class FeatxWarning(UserWarning):
    """Something the user should know that did not stop the work (cache rows embedded again);
    the CLI prints it as one line ``featx: warning: <message>``."""


def describe_os_error(error: OSError) -> str:
    """'No space left on device' and the like: the OS's words, without Python's decoration."""
    if error.errno is not None and error.errno in errno.errorcode:
        import os

        return os.strerror(error.errno)
    return first_line(error)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (libraries append pages of detail), else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
