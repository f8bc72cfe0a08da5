"""What a parameter may be, declared once and checked by one function.

scikit-learn's ``_parameter_constraints`` in featx's own small form: a head kind, the
fine-tuning recipe and the extraction options each declare a table of constraints;
`check_params` (or one constraint's `check`) refuses a value outside it with a
ParameterError that names the parameter and says what was expected and what arrived.
The CLI builds its option types from the same constraints (featx.cli.options), so a
flag, the Python API and the docs cannot disagree about a range.
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featx.errors import ParameterError


@dataclass(frozen=True)
class Interval:
    """An int or a float between `low` and `high` (either may be None: unbounded), ends
    included unless open; `also` lists values allowed outside it (-1 for "all cores")."""

    type: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_none: bool = False
    also: tuple[float, ...] = ()

    def describe(self) -> str:
        kind = "an integer" if self.type is int else "a number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = f"{kind} {' and '.join(parts)}".rstrip()
        return text + "".join(f" or {value:g}" for value in self.also)  # None (when allowed) is the default

    def check(self, name: str, value: Any) -> Any:
        """`value` when it fits (an int for an integer interval), else a ParameterError naming `name`."""
        if value is None and self.allow_none:
            return None
        number = _number(value, self.type)
        if number is None or not self._fits(number):
            raise ParameterError(name, f"must be {self.describe()}, got {value!r}")
        return number

    def _fits(self, number: float) -> bool:
        if number in self.also:
            return True
        if not math.isfinite(number):
            return False
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            return False
        return not (self.high is not None and (number > self.high or (self.high_open and number == self.high)))


@dataclass(frozen=True)
class Options:
    """One of a few named values."""

    values: tuple[Any, ...]
    allow_none: bool = False

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def check(self, name: str, value: Any) -> Any:
        if (value is None and self.allow_none) or value in self.values:
            return value
        raise ParameterError(name, f"must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def describe(self) -> str:
        return "true or false"

    def check(self, name: str, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise ParameterError(name, f"must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class Grid:
    """A non-empty tuple of values (one value is a grid of one), each fitting `item`."""

    item: Interval

    def describe(self) -> str:
        return f"one or more values, each {self.item.describe()} (a|b|c)"

    def check(self, name: str, value: Any) -> Any:
        values = value if isinstance(value, (tuple, list)) else (value,)
        if not values:
            raise ParameterError(name, f"must be {self.describe()}, got an empty grid")
        try:
            return tuple(self.item.check(name, v) for v in values)
        except ParameterError:
            raise ParameterError(name, f"must be {self.describe()}, got {value!r}") from None


@dataclass(frozen=True)
class Weights:
    """A mapping of names (or labels) to numbers > 0, as scikit-learn's class_weight takes."""

    def describe(self) -> str:
        return "a mapping of each class to a weight > 0"

    def check(self, name: str, value: Any) -> Any:
        try:
            if isinstance(value, Mapping):
                for weight in value.values():
                    POSITIVE.check(name, weight)
                return value
        except ParameterError:
            pass
        raise ParameterError(name, f"must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class AnyOf:
    """A value any one of `choices` accepts."""

    choices: tuple[Interval | Options | Flag | Grid | Weights, ...]

    def describe(self) -> str:
        return " or ".join(choice.describe() for choice in self.choices)

    def check(self, name: str, value: Any) -> Any:
        for choice in self.choices:
            try:
                return choice.check(name, value)
            except ParameterError:
                pass
        raise ParameterError(name, f"must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class ByteSize:
    """A size in bytes, given as a number of bytes or a string with a unit (512M, 1.5G, 2GiB: powers of
    1024), at least `low` bytes; checked to an int."""

    low: int = 1

    def describe(self) -> str:
        return f"a size such as 512M or 2G (K, M, G, T: powers of 1024), at least {self.low} bytes"

    def check(self, name: str, value: Any) -> Any:
        number = _number(value, float) if not isinstance(value, str) else _size(value)
        if number is None or not math.isfinite(number) or number < self.low:
            raise ParameterError(name, f"must be {self.describe()}, got {value!r}")
        return int(number)


_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def _size(text: str) -> float | None:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if match is None or (match.group(3) and match.group(3) != "b" and not match.group(2)):
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


Constraint = Interval | Options | Flag | Grid | Weights | AnyOf | ByteSize

# The ranges most parameters share.
COUNT = Interval(int, 1)  # rows, tokens, epochs, steps, ...: at least one
NON_NEGATIVE = Interval(int, 0)  # seeds, strides, layers to add
POSITIVE = Interval(float, 0, low_open=True)  # learning rates, penalties
FRACTION = Interval(float, 0, 1, low_open=True, high_open=True)  # a share of rows held out
JOBS = Interval(int, 1, also=(-1,))  # joblib's convention: -1 is every core
MEMORY_BUDGET = ByteSize(2 ** 16)  # featx train --memory-budget: 64 KiB at least
DEFAULT_MEMORY_BUDGET = 2 ** 30  # bytes of features one head may hold at once


def check_params(constraints: Mapping[str, Constraint], params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter in `params` checked against its declared constraint (ints for integer
    intervals); a parameter with no declaration is refused, as scikit-learn's validator does, so a
    new parameter cannot pass unchecked."""
    undeclared = sorted(set(params) - set(constraints))
    if undeclared:
        raise ParameterError(undeclared[0], f"is not a known parameter here (known: {', '.join(sorted(constraints))})")
    return {name: constraints[name].check(name, value) for name, value in params.items()}


def _number(value: Any, kind: type) -> float | None:
    """`value` as an int (kind int: only integral values) or float, None when it is no number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers are Real too
        return None
    number = float(value)
    if kind is int:
        return int(number) if number.is_integer() else None
    return number
