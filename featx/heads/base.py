"""The head protocol and the one registry of head kinds.

A head kind is one file: a scikit-learn classifier subclassing `Head`, decorated with
`@register_head`, and one import line in featx/heads/__init__.py. Everything else
(spec parsing, the CLI's choices, training tables, bench methods, saving and loading)
reads the registry.

The protocol, beyond scikit-learn's `fit`/`predict`/`predict_proba`:
- ``fit(X, y, X_val=None, y_val=None)``: validation rows, when given, choose the
  hyper-parameter the head sweeps (C, alpha, k, the epoch) and are never trained on;
  `y` is one task's labels (featx.metrics.task_of): class indices, a 0/1 matrix (multi-label:
  ``predict_proba`` gives each label's probability, and ``thresholds_``, chosen on validation,
  decide), or float targets (regression: ``predict_values``). A kind lists the `tasks` it fits;
- ``batch_key(X, y)`` / ``fit_batch(heads, X, y, ...)``: a kind whose heads can share the work of
  one fit (logreg's C grid, ridge's alphas) says which heads may, and fits them together;
- ``describe_choice()``: what was chosen and how, one short phrase for tables;
- ``state_arrays()`` / ``fitted_summary()``: the fitted numbers (safetensors) and the
  facts of the fit (JSON); ``check_state(arrays, n_classes)`` refuses arrays that do not
  fit the head's parameters before ``restore(arrays, classes, fitted)`` builds anything.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.constraints import Constraint, check_params
from featx.errors import FeatxError, ParameterError
from featx.heads.rows import map_blocks
from featx.metrics import choose_thresholds, task_of
from featx.store.rows import StoredRows

HEAD_KINDS: dict[str, type[Head]] = {}
DEFAULT_HEADS = ("logreg", "mlp")
# What a head may read instead of vectors: a store's per-row sequences (featx.store.states),
# token states (--cache-layer) or window vectors (--keep-windows).
SEQUENCE_READS = ("states", "windows")
TASK_NAMES = {"single": "single-label", "multi": "multi-label", "regression": "regression"}


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
    # The tasks the kind fits (featx.data.targets.TASKS).
    tasks: ClassVar[tuple[str, ...]] = ("single",)
    # The tasks the kind fits from StoredRows, a block at a time (featx.heads.rows); for the others
    # featx train hands it the rows in memory.
    streams: ClassVar[tuple[str, ...]] = ()

    def _task(self, y: Any) -> str:
        """The task of `y`, set as `task_`; one line when this kind does not fit it."""
        task = task_of(np.asarray(y))
        if task not in self.tasks:
            able = ", ".join(kind for kind, cls in HEAD_KINDS.items() if task in cls.tasks)
            raise FeatxError(f"the {self.kind} head does not fit {TASK_NAMES[task]} labels: use {able}")
        self.task_ = task
        return task

    def _check_rows(self, X: Any, y: Any = "no_validation", *, reset: bool = True, **options: Any) -> Any:
        """scikit-learn's validate_data, except that StoredRows (rows a streamed fit reads from the store a
        block at a time, featx.heads.rows) stay on disk: their width is checked or learnt, y made an array."""
        if not isinstance(X, StoredRows):
            return validate_data(self, X, y, reset=reset, **options)
        if reset:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        return X if isinstance(y, str) else (X, np.asarray(y))

    def _loss_targets(self, y: np.ndarray, fit: bool = False) -> np.ndarray:
        """What a head trained by a loss (mlp, blocks) compares its outputs with: class indices (int64),
        0/1 labels (float32), or the targets standardised on the training rows (float32). `fit`:
        learn the classes, and a regression's target moments (`target_mean_`, `target_scale_`)."""
        if fit and self.task_ != "regression":
            self.target_mean_ = self.target_scale_ = None  # never a moment left from an earlier fit
        if self.task_ == "single":
            if fit:
                check_classification_targets(y)
                self.classes_ = np.unique(y)
            return np.searchsorted(self.classes_, y).astype(np.int64)
        if fit:
            self.classes_ = np.arange(y.shape[1])
            if self.task_ == "regression":
                self.target_mean_ = y.mean(0).astype(np.float32)
                self.target_scale_ = np.maximum(y.std(0), 1e-12).astype(np.float32)
        if self.task_ == "regression":
            scaled: np.ndarray = ((y - self.target_mean_) / self.target_scale_).astype(np.float32)
            return scaled
        return np.asarray(y, dtype=np.float32)

    def _set_thresholds(self, X_val: Any, y_val: np.ndarray | None) -> None:
        """Multi-label: each label's threshold on predict_proba, chosen by F1 on the validation rows
        (0.5 without any), kept as `thresholds_` and saved with the head."""
        if getattr(self, "task_", "single") != "multi":
            return
        self.thresholds_ = np.full(len(self.classes_), 0.5) if X_val is None or y_val is None else \
            choose_thresholds(map_blocks(self.predict_proba, X_val), np.asarray(y_val))

    def predict(self, X: Any) -> np.ndarray:
        """Class labels; a multi-label row's 0/1 labels (probability >= its threshold); a regression
        row's values."""
        check_is_fitted(self)
        task = getattr(self, "task_", "single")
        if task == "regression":
            return self.predict_values(X)
        probabilities = self.predict_proba(X)
        if task == "multi":
            return (probabilities >= self.thresholds_).astype(np.uint8)
        result: np.ndarray = self.classes_[probabilities.argmax(1)]
        return result

    def predict_proba(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def predict_values(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _validate_params(self) -> None:
        """Refuse hyper-parameters outside the kind's declared constraints (a ParameterError naming one)."""
        check_params(self.parameter_constraints, self.get_params())

    def fit(self, X: Any, y: np.ndarray, X_val: Any = None, y_val: np.ndarray | None = None) -> Head:
        """X (and X_val): an array of vectors, or for a kind that reads texts too (`reads`), a
        featx.heads.hybrid.TextVectors."""
        raise NotImplementedError

    def batch_key(self, X: Any, y: np.ndarray) -> Any:
        """Heads of one kind whose keys are equal, and not None, on the same rows are fitted together by
        `fit_batch` (featx train's --grid); None, the default: this head fits alone."""
        return None

    @classmethod
    def fit_batch(cls, heads: list[Head], X: Any, y: np.ndarray, X_val: Any = None, y_val: np.ndarray | None = None,
                  done: Callable[[int], object] | None = None) -> None:
        """Fit `heads`, whose `batch_key`s are equal, on the same rows at once; each ends as its own `fit` would.
        `done(n)` is called each time n more of them are fitted (a progress bar)."""
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


def edge_warning(name: str, chosen: float, grid: tuple[float, ...], curve: list[dict[str, float]], *,
                 kind: str | None = None, grid_name: str | None = None, lowest: float | None = None) -> str | None:
    """The warning for a value chosen from `grid` (by a non-empty `curve`) at one of its ends, where
    validation was still improving toward that end; None inside the grid, at a tie with the next
    value, or at the smallest value there is (`lowest`: k=1 has nothing below it). It names the
    grid parameter (`grid_name`), its syntax, and a wider grid to try next, as a --head spec for
    `kind`: the grid extended by two of its own steps past that end, every value kept, so the
    next run's choice, if the same, is no longer at an edge."""
    values = sorted(set(grid))
    if not curve or len(values) < 2 or values[0] < chosen < values[-1]:
        return None
    low = chosen == values[0]
    if low and lowest is not None and chosen <= lowest:
        return None
    neighbour = values[1] if low else values[-2]
    if _best_score(curve, name, chosen) <= _best_score(curve, name, neighbour):
        return None  # no better at the edge than beside it: nothing says the best lies beyond
    end, direction = ("smallest", "smaller") if low else ("largest", "larger")
    wider = _widened(values, low, lowest, integer=all(float(v).is_integer() for v in values))
    grid_name = grid_name or name
    spec = f"{kind}:{grid_name}={spec_value(wider)}"
    return (f"{name}={chosen:g} is the {end} value of its grid ({grid_name}={spec_value(values)}) "
            f"and validation still improved toward it: the best may be {direction}; widen the grid, e.g. "
            + (f'--head "{spec}"' if kind else f"{grid_name}={spec.split('=', 1)[1]}"))


def _best_score(curve: list[dict[str, float]], name: str, value: float) -> float:
    return max((p["score"] for p in curve if p.get(name) == value), default=-math.inf)


def _widened(values: list[float], low: bool, lowest: float | None, integer: bool) -> list[float]:
    """`values` with two more steps past the low or high end, each step the grid's own ratio there
    (its difference where a value is 0), never below `lowest`."""
    a, b = (values[0], values[1]) if low else (values[-1], values[-2])
    steps: list[float] = []
    for i in (1, 2):
        value = a * (a / b) ** i if a > 0 and b > 0 else a + (a - b) * i
        if integer:
            value = float(round(value))
        if lowest is not None:
            value = max(value, lowest)
        steps.append(value)
    return sorted({*values, *steps})


def describe_parameters(cls: type[Head]) -> str:
    """A head kind's parameters with their defaults, as a spec writes them (grids a|b|c), from the
    kind's own declarations; `random_state` is left out (it is --seed)."""
    defaults = cls().get_params()
    return ", ".join(f"{name}={spec_value(defaults[name], digits='.3g')}" for name in cls.parameter_constraints
                     if name != "random_state" and name in defaults)


def spec_value(value: Any, sep: str = "|", digits: str = "g") -> str:
    """A parameter's value as a head spec writes it: a grid's values joined by `sep` (a|b|c),
    numbers in the `digits` format; `sep="_"` gives the form run folders are named with."""
    if isinstance(value, (tuple, list)):
        return sep.join(spec_value(v, sep, digits) for v in value)
    return format(value, digits) if isinstance(value, float) else str(value)


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
