"""WindowsHead: a learned attention over a long text's window vectors, then a linear classifier,
trained on the window vectors a store keeps (``featx extract --long chunk --keep-windows``).

Mean or max pooling of the windows treats every window alike; a review whose verdict sits in
its last paragraph, or a post whose topic is in its first, is better served by weights that
depend on each window's content. The head standardises the window vectors (the train
windows' mean and spread), scores each window with a small tanh layer, and classifies the
softmax-weighted sum. The scorer's output layer starts at zero, so before training every
window weighs the same: the head starts as a linear classifier on the mean of the
standardised windows, and attention is what training adds.

It trains with AdamW on batches of rows (their windows padded and masked) for up to `epochs`,
keeping the epoch with the best validation accuracy and stopping after `patience` epochs
without a better one; without validation rows, the last epoch.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from featx.constraints import COUNT, NON_NEGATIVE, POSITIVE, Constraint, Interval
from featx.epochs import EpochLoop, run_epochs
from featx.errors import DamagedError, FeatxError, first_line
from featx.extraction.batching import pad_sequences
from featx.heads.base import Head, register_head
from featx.store.states import RowSequences

_PREDICT_ROWS = 256


class WindowAttention(torch.nn.Module):
    """Standardise, score each window, softmax over a row's real windows, weighted sum, linear."""

    center: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int, n_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        last = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(last.weight)  # every window weighs the same at the start
        torch.nn.init.zeros_(last.bias)
        self.score = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(), last)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(dim, n_classes)

    def weights(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(rows, windows): how much each real window counts (padding: 0); rows sum to 1."""
        scores = self.score(self._standardised(windows)).squeeze(-1)
        weights: torch.Tensor = torch.softmax(scores.masked_fill(~mask.bool(), float("-inf")), dim=1)
        return weights

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self._standardised(windows)
        pooled = (self.weights(windows, mask).unsqueeze(-1) * x).sum(1)
        logits: torch.Tensor = self.classifier(self.dropout(pooled))
        return logits

    def _standardised(self, windows: torch.Tensor) -> torch.Tensor:
        return (windows - self.center) / self.scale


@register_head
class WindowsHead(Head):
    """Attention over window vectors + linear classifier (see the module docstring)."""

    kind = "windows"

    summary = "attention over a long text's window vectors (needs --long chunk --keep-windows)"
    reads: ClassVar[tuple[str, ...]] = ("windows",)
    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "hidden": COUNT, "epochs": COUNT, "patience": COUNT, "lr": POSITIVE, "weight_decay": Interval(float, 0),
        "dropout": Interval(float, 0, 1, high_open=True), "batch_size": COUNT, "random_state": NON_NEGATIVE}

    def __init__(self, hidden: int = 128, epochs: int = 60, patience: int = 10, lr: float = 1e-3,
                 weight_decay: float = 1e-2, dropout: float = 0.1, batch_size: int = 64,
                 random_state: int = 0) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.patience = patience
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X: RowSequences, y: np.ndarray, X_val: RowSequences | None = None,
            y_val: np.ndarray | None = None) -> WindowsHead:
        """Train on the window vectors `X`; validation rows choose the epoch (without them, the last)."""
        self._validate_params()
        _check_windows(X)
        y = np.asarray(y)
        self.classes_, targets = np.unique(y, return_inverse=True)
        torch.manual_seed(self.random_state)
        used = np.concatenate([X.row(i) for i in range(len(X))]).astype(np.float64)
        model = WindowAttention(X.values.shape[1], len(self.classes_), self.hidden, self.dropout)
        model.center = torch.from_numpy(used.mean(0)).float()
        model.scale = torch.from_numpy(np.maximum(used.std(0), 1e-6)).float()
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        target = torch.from_numpy(targets)

        def batches(rng: np.random.Generator) -> Iterator[np.ndarray]:
            order = rng.permutation(len(X))
            return (order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size))

        def loss(rows: np.ndarray) -> tuple[torch.Tensor, int]:
            windows, mask = pad_sequences(X, rows)
            return torch.nn.functional.cross_entropy(model(windows, mask), target[rows]), len(rows)

        def evaluate() -> dict[str, Any]:
            assert X_val is not None and y_val is not None
            self.model_ = model
            score = float(np.mean(self.classes_[self.predict_proba(X_val).argmax(1)] == np.asarray(y_val)))
            return {"score": score, "val_accuracy": round(score, 6)}

        history: list[dict[str, Any]] = []
        result = run_epochs(EpochLoop(model=model, optimizer=optimizer, batches=batches, loss=loss, epochs=self.epochs,
                                      seed=self.random_state, patience=self.patience, history=history,
                                      evaluate=evaluate if X_val is not None and y_val is not None else None,
                                      label=f"{self.kind} head", unit="epoch"))
        assert result.best_state is not None
        model.load_state_dict(result.best_state)
        self.model_, self.best_epoch_, self.history_ = model.eval(), result.best_epoch, history
        return self

    @torch.inference_mode()
    def predict_proba(self, X: RowSequences) -> np.ndarray:
        check_is_fitted(self, "model_")
        _check_windows(X)
        self.model_.eval()
        out = np.empty((len(X), len(self.classes_)), dtype=np.float64)
        for start in range(0, len(X), _PREDICT_ROWS):
            rows = np.arange(start, min(start + _PREDICT_ROWS, len(X)))
            out[rows] = torch.softmax(self.model_(*pad_sequences(X, rows)), 1).double().numpy()
        return out

    def predict(self, X: RowSequences) -> np.ndarray:
        result: np.ndarray = self.classes_[self.predict_proba(X).argmax(1)]
        return result

    @torch.inference_mode()
    def window_weights(self, X: RowSequences) -> list[np.ndarray]:
        """How much each window of each row counts in its prediction (each row's weights sum to 1)."""
        check_is_fitted(self, "model_")
        weights = self.model_.weights(*pad_sequences(X, np.arange(len(X))))
        return [weights[i, :int(n)].numpy() for i, n in enumerate(X.lengths)]

    def describe_choice(self) -> str:
        check_is_fitted(self, "model_")
        chosen = "by validation accuracy" if "val_accuracy" in self.history_[-1] else "the last"
        return f"epoch {self.best_epoch_} of {len(self.history_)} ({chosen})"

    def state_arrays(self) -> dict[str, np.ndarray]:
        check_is_fitted(self, "model_")
        return {name: value.detach().float().numpy() for name, value in self.model_.state_dict().items()}

    def fitted_summary(self) -> dict[str, Any]:
        check_is_fitted(self, "model_")
        return {"best_epoch": self.best_epoch_, "history": self.history_}

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        weight, center = arrays.get("classifier.weight"), arrays.get("center")
        hidden = arrays.get("score.0.weight")
        if weight is None or center is None or hidden is None or weight.shape != (n_classes, center.shape[0]) or \
                hidden.shape != (self.hidden, center.shape[0]):
            raise DamagedError(f"its classifier or scorer does not fit its {n_classes} classes and hidden={self.hidden}")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> WindowsHead:
        model = WindowAttention(arrays["center"].shape[0], len(classes), self.hidden, self.dropout)
        try:
            model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in arrays.items()})
        except RuntimeError as e:
            raise DamagedError(f"its weights do not fit a windows head ({first_line(e)})") from None
        self.model_, self.classes_ = model.eval(), classes
        self.best_epoch_, self.history_ = int(fitted["best_epoch"]), list(fitted["history"])
        return self


def _check_windows(X: Any) -> None:
    if not isinstance(X, RowSequences) or X.config.sequences != "windows":
        raise FeatxError("the windows head trains on window vectors: extract the store with --long chunk "
                         "--keep-windows")
