"""No user error anywhere in the CLI ends in a traceback.

Every command's --help examples are run with one value at a time mutated to one the
option's declared type must refuse: a number below (or above) its declared range or not
a number at all, a choice that is not one, an empty text, a path that does not exist.
The mutations are chosen from each option's type, so a new command or option is
covered as soon as it exists, and an option whose type declares nothing to refuse (a
bare int) fails the test until it declares its range.
"""
from __future__ import annotations

import shlex

import click
import pytest

from featx.cli import cli
from featx.cli.options import Constrained, flag_name
from featx.constraints import ByteSize
from tests.faults.conftest import assert_refused

MISSING = "missing/nothing.h5"


def _examples(command: click.Command) -> list[list[str]]:
    """The argument lists of the `featx NAME ...` lines in the command's help (continuations joined)."""
    text = (command.help or "").replace("\\\n", " ")
    name = command.name or ""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(f"featx {name}")]
    return [shlex.split(line)[2:] for line in lines]


def invalid_values(param: click.Parameter) -> list[str]:
    """Values the option's type must refuse."""
    kind = param.type
    if isinstance(kind, Constrained) and isinstance(kind.constraint, ByteSize):
        return ["abc", "1iB", str(kind.constraint.low - 1)]
    if isinstance(kind, Constrained):
        bound = kind.constraint
        values = ["abc"]
        if bound.low is not None:
            values.append(f"{bound.low:g}" if bound.low_open else f"{bound.low - 1:g}")
        if bound.high is not None:
            values.append(f"{bound.high:g}" if bound.high_open else f"{bound.high + 1:g}")
        return values
    if isinstance(kind, click.Choice):
        return ["bogus"]
    if isinstance(kind, click.Path) and kind.exists:
        return ["", MISSING]
    if isinstance(kind, (click.types.StringParamType, click.Path)):
        return [""]
    raise AssertionError(f"{param.name}: a {kind.name} option declares no range or form to refuse; give it a "
                         "featx.cli.options.Constrained type (or a Choice)")


def _with_option(example: list[str], param: click.Parameter, value: str) -> list[str]:
    """`example` with `param` set to `value` (its first occurrence replaced, else appended)."""
    args = list(example)
    for i, token in enumerate(args[:-1]):
        if token in param.opts:
            args[i + 1] = value
            return args
    return [*args, flag_name(param), value]


def _with_argument(command: click.Command, example: list[str], param: click.Argument) -> list[str]:
    """`example` with the value(s) of the positional `param` replaced by a path that does not exist."""
    with command.make_context(command.name, list(example), resilient_parsing=True) as ctx:
        given = ctx.params.get(param.name or "")
    given = given if isinstance(given, tuple) else (given,)
    args = [token for token in example if token not in given[1:]]
    return [MISSING if token == given[0] else token for token in args]


def _cases() -> list[tuple[str, list[str], str | None]]:
    """(command, args, flag the error must name, or None for a positional argument), each option of each
    command mutated in the first example that uses it (else the first example)."""
    cases = []
    for name, command in sorted(cli.commands.items()):
        examples = _examples(command)
        assert examples, f"featx {name} --help has no example to mutate"
        for param in command.params:
            if isinstance(param, click.Argument):
                cases.append((name, _with_argument(command, examples[0], param), None))
                continue
            if getattr(param, "is_flag", False) or not param.opts[0].startswith("-"):
                continue
            example = next((e for e in examples if set(param.opts) & set(e)), examples[0])
            cases += [(name, _with_option(example, param, value), flag_name(param)) for value in invalid_values(param)]
    return cases


CASES = _cases()


def test_every_command_and_option_is_covered():
    commands = {name for name, _, _ in CASES}
    takes_values = {name for name, command in cli.commands.items()
                    if any(isinstance(p, click.Argument) or not getattr(p, "is_flag", False) for p in command.params)}
    assert commands == takes_values and set(cli.commands) - takes_values == {"heads", "modalities"}  # flags only
    assert len(CASES) > 100  # every value-taking option of nine commands, one to three values each


@pytest.mark.parametrize("command, args, flag", CASES, ids=[f"{c} {' '.join(a)}" for c, a, _ in CASES])
def test_an_invalid_value_ends_in_one_line_naming_the_option(cli, tmp_path, monkeypatch, command, args, flag):
    # In an empty folder (anything a wrongly accepted value wrote would land here), where the paths
    # that options declare as existing do exist (empty), so that only the mutated value is wrong.
    monkeypatch.chdir(tmp_path)
    _make_declared_paths(cli_command(command), args)
    assert_refused(cli(command, *args), *([flag] if flag else []))


def cli_command(name: str) -> click.Command:
    return cli.commands[name]


def _make_declared_paths(command: click.Command, args: list[str]) -> None:
    from pathlib import Path

    for param in command.params:
        if not (isinstance(param.type, click.Path) and param.type.exists):
            continue
        for i, token in enumerate(args[:-1]):
            value = args[i + 1]
            if token in param.opts and value not in ("", MISSING):
                path = Path(value)
                if param.type.dir_okay and not param.type.file_okay:
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
