"""MLPHead: the classic transfer-learning head, trained in torch on cached features.

Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout -> Linear, AdamW, early
stopping on validation loss. Features can be a numpy array, an h5py dataset or StoredRows
(featx.heads.rows: what `featx train` hands it when the store is over --memory-budget): rows on
disk are read in contiguous blocks (shuffled block order, shuffled rows inside a block), and the
validation rows a block at a time, so the fit never needs the whole matrix.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from featx.constraints import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Constraint, Flag, Interval
from featx.errors import DamagedError
from featx.heads.base import Head, register_head
from featx.heads.rows import column_moments, row_slices, take
from featx.heads.split import can_stratify, stratified_split
from featx.store.rows import StoredRows, as_rows

_BLOCK_ROWS = 16_384  # rows read from HDF5 at once when the features are on disk


def build_mlp(n_features: int, n_classes: int, hidden: int, layers: int, dropout: float) -> torch.nn.Sequential:
    """`layers` blocks of Linear -> ReLU -> Dropout, then the classifier Linear."""
    modules: list[torch.nn.Module] = []
    width = n_features
    for _ in range(layers):
        modules += [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = hidden
    modules.append(torch.nn.Linear(width, n_classes))
    return torch.nn.Sequential(*modules)


@register_head
class MLPHead(Head):
    """A small MLP classifier, seeded and deterministic on CPU.

    Validation for early stopping: ``X_val, y_val`` given to `fit`, else a stratified
    ``val_fraction`` of the training rows (then not trained on). The best epoch's
    weights are kept (``best_epoch_``, ``history_``).

    Multi-label: one sigmoid output a label, binary cross-entropy, each label's threshold chosen
    on the validation rows. Regression: one output a target, mean squared error on the targets
    standardised on the training rows.
    """

    kind = "mlp"
    tasks = streams = ("single", "multi", "regression")

    summary = "an MLP with one hidden layer and early stopping"

    parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "hidden": COUNT, "layers": NON_NEGATIVE, "dropout": Interval(float, 0, 1, high_open=True), "lr": POSITIVE,
        "weight_decay": Interval(float, 0), "batch_size": COUNT, "max_epochs": COUNT, "patience": COUNT,
        "val_fraction": FRACTION, "standardize": Flag(), "random_state": NON_NEGATIVE}

    def __init__(self, hidden: int = 256, layers: int = 2, dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 0.01, batch_size: int = 256, max_epochs: int = 100, patience: int = 5,
                 val_fraction: float = 0.1, standardize: bool = True, random_state: int = 0) -> None:
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.standardize = standardize
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> MLPHead:
        """Train until validation loss stops improving; keep the best epoch."""
        self._validate_params()
        task = self._task(y)
        X, y = self._check_rows(as_rows(X, _BLOCK_ROWS), y, dtype=np.float32, multi_output=task != "single")
        y_index = self._loss_targets(y, fit=True)
        train_rows = np.arange(len(y))
        if X_val is not None:
            y_val = np.asarray(y_val)
            if task == "single" and len(unknown := np.setdiff1d(y_val, self.classes_)):
                raise ValueError(f"y_val has labels not seen in training: {unknown[:5].tolist()}")
            val = (X_val, self._loss_targets(y_val))
        elif can_stratify(y_index, 2):
            train_rows, held_out = stratified_split(y_index, self.val_fraction, self.random_state)
            val = (take(X, held_out), y_index[held_out])
        else:
            val = None  # too few rows to hold any out: train for max_epochs
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        if self.standardize:
            moments = column_moments(take(X, train_rows))
            self.mean_, self.scale_ = moments[0].astype(np.float32), moments[1].astype(np.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self._train(X, y_index, train_rows, val)
        if task == "multi":  # thresholds on the validation rows (none carved: 0.5)
            self._set_thresholds(None if val is None else val[0], None if val is None else val[1])
        return self

    def _train(self, X: np.ndarray, y_index: np.ndarray, train_rows: np.ndarray,
               val: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Train through the one epoch loop (featx.epochs): the epoch of the lowest validation loss
        (without validation rows, of the lowest training loss) is kept; `patience` epochs without a
        lower one end the training."""
        from featx.epochs import EpochLoop, run_epochs
        from featx.finetune.recipe import TaskTargets

        model = build_mlp(self.n_features_in_, len(self.classes_), self.hidden, self.layers, self.dropout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_of = TaskTargets(self.task_).loss

        def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
            xb, yb = batch
            return loss_of(model(self._scale(xb)), yb), len(yb)

        self.history_: list[dict[str, Any]] = []
        result = run_epochs(EpochLoop(
            model=model, optimizer=optimizer, loss=loss, epochs=self.max_epochs, seed=self.random_state,
            batches=lambda rng: _minibatches(X, y_index, train_rows, self.batch_size, rng),
            evaluate=None if val is None else lambda: self._validate(model, loss_of, *val),
            patience=self.patience, min_delta=1e-6, select_on_loss=True, history=self.history_,
            label=f"{self.kind} head", unit="epoch"))
        assert result.best_state is not None  # the first epoch always improves on nothing
        model.load_state_dict(result.best_state)
        self.model_, self.best_epoch_ = model.eval(), result.best_epoch
        self.n_iter_ = len(self.history_)

    def _validate(self, model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  X_val: Any, y_val: np.ndarray) -> dict[str, float]:
        """The validation loss (its negative is the epoch's score: lower is better) and accuracy, from
        the validation rows a block at a time."""
        model.eval()
        summed, correct = 0.0, 0
        with torch.inference_mode():
            for rows in row_slices(X_val, _BLOCK_ROWS):
                # A copy: joblib hands workers read-only memory maps, which torch will not wrap.
                logits = model(self._scale(torch.from_numpy(np.array(X_val[rows], dtype=np.float32))))
                targets = torch.from_numpy(y_val[rows])
                summed += float(loss_fn(logits, targets)) * len(targets)
                if self.task_ == "single":
                    correct += int((logits.argmax(1) == targets).sum())
        record = {"val_loss": summed / len(y_val)}
        record["score"] = -record["val_loss"]
        if self.task_ == "single":
            record["val_accuracy"] = correct / len(y_val)
        return record

    def _scale(self, xb: torch.Tensor) -> torch.Tensor:
        if self.mean_ is None:
            return xb
        return (xb - torch.from_numpy(self.mean_)) / torch.from_numpy(self.scale_)

    def _logits(self, X: np.ndarray) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        with torch.inference_mode():
            result: torch.Tensor = self.model_(self._scale(torch.from_numpy(np.ascontiguousarray(X))))
            return result

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        logits = self._logits(X).numpy()
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self._logits(X)  # checks the head is fitted first
        if self.task_ == "multi":
            return torch.sigmoid(logits).numpy().astype(np.float64)
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        result: np.ndarray = (self._logits(X).numpy() * self.target_scale_ + self.target_mean_).astype(np.float64)
        return result

    # ---- persistence as plain tensors (see featx.heads.base) ----

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The network's state dict (and the standardisation), as numpy arrays."""
        check_is_fitted(self)
        state = {f"net.{k}": v.detach().numpy() for k, v in self.model_.state_dict().items()}
        if self.mean_ is not None:
            state.update(mean=self.mean_, scale=self.scale_)
        if getattr(self, "target_mean_", None) is not None:
            state.update(target_mean=self.target_mean_, target_scale=self.target_scale_)
        return state

    def check_state(self, arrays: dict[str, np.ndarray], n_classes: int) -> None:
        """Refuse saved arrays that are not exactly this network's for `n_classes` classes.

        Checked before the network is built, so absurd sizes in head.json never allocate."""
        first = arrays.get("net.0.weight")
        if first is None or first.ndim != 2 or not isinstance(self.layers, int) or not 0 <= self.layers <= 64:
            raise DamagedError("mlp weights are missing or its layer count is not a small integer")
        expected: dict[str, tuple[int, ...]] = {}
        width = first.shape[1]
        for block in range(self.layers):
            expected[f"net.{3 * block}.weight"] = (self.hidden, width)
            expected[f"net.{3 * block}.bias"] = (self.hidden,)
            width = self.hidden
        expected[f"net.{3 * self.layers}.weight"] = (n_classes, width)
        expected[f"net.{3 * self.layers}.bias"] = (n_classes,)
        if self.standardize:
            expected.update(mean=(first.shape[1],), scale=(first.shape[1],))
        if getattr(self, "task_", "single") == "regression":
            expected.update(target_mean=(n_classes,), target_scale=(n_classes,))
        found = {name: tuple(values.shape) for name, values in arrays.items()}
        if found != expected:
            raise DamagedError(f"mlp weights do not match its parameters (hidden {self.hidden}, layers "
                               f"{self.layers}, {n_classes} classes)")

    def restore(self, arrays: dict[str, np.ndarray], classes: np.ndarray, fitted: dict[str, Any]) -> MLPHead:
        """Rebuild the fitted head from `state_arrays()` output, without retraining."""
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(arrays["net.0.weight"].shape[1])
        model = build_mlp(self.n_features_in_, len(self.classes_), self.hidden, self.layers, self.dropout)
        model.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")})
        self.model_ = model.eval()
        self.mean_ = arrays.get("mean")
        self.scale_ = arrays.get("scale")
        self.target_mean_, self.target_scale_ = arrays.get("target_mean"), arrays.get("target_scale")
        self.best_epoch_, self.history_ = fitted["best_epoch_"], fitted["history_"]
        self.n_iter_ = len(self.history_)
        return self

    def describe_choice(self) -> str:
        return f"best epoch {self.best_epoch_} of {len(self.history_)}"

    def fitted_summary(self) -> dict[str, Any]:
        """JSON-ready facts of the fit: best epoch and the per-epoch history."""
        return {"best_epoch_": self.best_epoch_, "history_": self.history_}


def _minibatches(X: Any, y_index: np.ndarray, rows: np.ndarray, batch_size: int,
                 rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled (features, labels) minibatches over `rows`; block-wise for StoredRows X."""
    block_rows = X.block_rows if isinstance(X, StoredRows) else max(len(X), 1)
    blocks = np.unique(rows // block_rows)  # rows are sorted: each block's rows lie between two bounds
    bounds = np.searchsorted(rows, np.append(blocks, blocks[-1] + 1) * block_rows) if len(blocks) else blocks
    for i in rng.permutation(len(blocks)):
        inside = rows[bounds[i]:bounds[i + 1]]
        features = np.ascontiguousarray(X[inside], dtype=np.float32)
        order = rng.permutation(len(inside))
        for start in range(0, len(order), batch_size):
            pick = order[start:start + batch_size]
            yield torch.from_numpy(features[pick]), torch.from_numpy(y_index[inside[pick]])
