"""The head protocol and the one registry of head kinds.

A head kind is one file: a scikit-learn classifier subclassing `Head`, decorated with
`@register_head`, and one import line in featx/heads/__init__.py. Everything else
(spec parsing, the CLI's choices, training tables, bench methods, saving and loading)
reads the registry.

The protocol, beyond scikit-learn's `fit`/`predict`/`predict_proba`:
- ``fit(X, y, X_val=None, y_val=None)``: validation rows, when given, choose the
  hyper-parameter the head sweeps (C, alpha, k, the epoch) and are never trained on;
- ``describe_choice()``: what was chosen and how, one short phrase for tables;
- ``state_arrays()`` / ``fitted_summary()``: the fitted numbers (safetensors) and the
  facts of the fit (JSON); ``check_state(arrays, n_classes)`` refuses arrays that do not
  fit the head's parameters before ``restore(arrays, classes, fitted)`` builds anything.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from featx.constraints import Constraint, check_params
from featx.errors import FeatxError, ParameterError

HEAD_KINDS: dict[str, type[Head]] = {}
DEFAULT_HEADS = ("logreg", "mlp")
# What a head may read instead of vectors: a store's per-row sequences (featx.store.states),
# token states (--cache-layer) or window vectors (--keep-windows).
SEQUENCE_READS = ("states", "windows")


def sequence_read(reads: tuple[str, ...]) -> str | None:
    """Which per-row sequences a head reading `reads` trains on ("states", "windows"), else None."""
    return next((read for read in reads if read in SEQUENCE_READS), None)


class Head(ClassifierMixin, BaseEstimator):
    """Base of every head kind; see the module docstring for the protocol."""

    kind: ClassVar[str] = ""
    # One line for `featx train --help`: what it fits and what it needs (the help lists every kind).
    summary: ClassVar[str] = ""
    # What the head reads of each row: its cached vector, for some kinds its text too, or the
    # store's per-row sequences instead (SEQUENCE_READS).
    reads: ClassVar[tuple[str, ...]] = ("vectors",)
    # What each hyper-parameter may be (featx.constraints), checked by make_head and by fit.
    parameter_constraints: ClassVar[dict[str, Constraint]] = {}

    def _validate_params(self) -> None:
        """Refuse hyper-parameters outside the kind's declared constraints (a ParameterError naming one)."""
        check_params(self.parameter_constraints, self.get_params())

    def fit(self, X: Any, y: np.ndarray, X_val: Any = None, y_val: np.ndarray | None = None) -> Head:
        """X (and X_val): an array of vectors, or for a kind that reads texts too (`reads`), a
        featx.heads.hybrid.TextVectors."""
        raise NotImplementedError

    def describe_choice(self) -> str:
        raise NotImplementedError

    def selection_warning(self) -> str | None:
        """A sentence when the selected hyper-parameter sits at the edge of its grid (the best
        value may lie beyond it), else None. Kinds without a swept grid never warn."""
        return None

    def state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def fitted_summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        raise NotImplementedError

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> Head:
        raise NotImplementedError


def edge_warning(name: str, chosen: float, grid: tuple[float, ...], curve: list[dict[str, float]]) -> str | None:
    """The warning for a value chosen from `grid` (by a non-empty `curve`) at one of its ends."""
    if not curve or len(grid) < 2 or min(grid) < chosen < max(grid):
        return None
    end, direction = ("smallest", "smaller") if chosen == min(grid) else ("largest", "larger")
    return f"{name}={chosen:.3g} is the {end} value of its grid: the best may be {direction}; widen the grid"


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: make `cls` available by its `kind` everywhere featx names heads."""
    if not cls.kind or cls.kind in HEAD_KINDS or not cls.summary:
        raise ValueError(f"head kind {cls.kind!r} is empty, registered twice or has no summary")
    HEAD_KINDS[cls.kind] = cls
    return cls


def make_head(kind: str, **params: Any) -> Head:
    """An unfitted head of a registered `kind` with the given hyper-parameters."""
    if kind not in HEAD_KINDS:
        raise FeatxError(f"unknown head {kind!r}: choose from {', '.join(HEAD_KINDS)}")
    cls = HEAD_KINDS[kind]
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise FeatxError(f"{kind} head has no parameter {unknown[0]!r}; it has: {', '.join(sorted(valid))}")
    head = cls(**params)
    try:
        head._validate_params()
    except ParameterError as e:  # the CLI names --head, and the spec's kind and parameter
        raise ParameterError("head", f"{kind}: {e.param} {e.message}") from None
    return head
