"""The one epoch loop: fine-tuning (featx.finetune.recipe) and the heads trained in torch (mlp, blocks,
windows) all train through `run_epochs`.

A caller hands an `EpochLoop`: the model and its optimizer (and schedule), how one epoch's
batches are drawn, the loss of a batch, and optionally how the model scores on validation rows.
The loop steps the optimizer (clipping the gradients to one norm where asked), validates after
each epoch, keeps the best epoch by its validation score (without validation rows: by the
training loss where `select_on_loss`, else the last epoch), stops early after `patience` epochs
without a better one, and gives back every epoch's record, the best epoch and, unless the caller
keeps it elsewhere (a fine-tuning checkpoint: `on_best`), the best epoch's weights.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featx.progress import progress_bar


@dataclass
class EpochLoop:
    """What one training run is made of; see the module docstring."""

    model: Any  # a torch module
    optimizer: Any
    batches: Callable[[np.random.Generator], Iterable[Any]]  # one epoch of batches, drawn with the loop's rng
    loss: Callable[[Any], Any]  # a batch -> (loss tensor, the batch's row count)
    epochs: int
    seed: int = 0
    scheduler: Any = None  # stepped after every optimizer step
    total_steps: int | None = None  # stop after this many steps, whatever the epoch
    grad_clip: float | None = None
    # Validation: the model's metrics as it is now, with "score" (higher is better), or None.
    evaluate: Callable[[], dict[str, Any]] | None = None
    patience: int | None = None  # stop after this many epochs without a better one (with validation)
    min_delta: float = 0.0  # how much better a score must be to count as better
    select_on_loss: bool = False  # without validation, keep the epoch of the lowest training loss
    keep_weights: bool = True  # keep a copy of the best epoch's weights (heads); a checkpoint: on_best
    on_best: Callable[[dict[str, Any]], None] = field(default=lambda record: None)
    # Where the epochs' records and every step's loss (5 decimals) go: a caller's lists, live as they grow.
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    before_epoch: Callable[[], None] = field(default=lambda: None)  # after model.train()
    label: str = "train"
    unit: str = "step"  # the progress bar counts steps, or epochs
    progress: bool | None = None


@dataclass
class EpochResult:
    best_epoch: int
    best_state: dict[str, Any] | None  # the best epoch's state dict (keep_weights)


def run_epochs(loop: EpochLoop) -> EpochResult:
    """Train `loop.model` as `loop` says; each epoch's record (epoch, steps, train_loss, seconds and
    the validation's metrics but "score") is appended to `loop.history`. The model is left as the
    last step made it: load `best_state` for the best epoch's weights."""
    rng = np.random.default_rng(loop.seed)
    best_score, best_epoch, best_state, stale, step = -np.inf, 0, None, 0, 0
    total = loop.total_steps if loop.unit == "step" and loop.total_steps is not None else loop.epochs
    bar = progress_bar(int(total), loop.label, unit=loop.unit, show=loop.progress)
    try:
        for epoch in range(1, loop.epochs + 1):
            loop.model.train()
            loop.before_epoch()
            t0, summed, seen = time.perf_counter(), 0.0, 0
            for batch in loop.batches(rng):
                loss, rows = loop.loss(batch)
                loop.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if loop.grad_clip is not None:
                    clip_gradients(loop.model, loop.grad_clip)
                loop.optimizer.step()
                if loop.scheduler is not None:
                    loop.scheduler.step()
                value = loss.item()
                loop.losses.append(round(value, 5))
                summed, seen, step = summed + value * rows, seen + rows, step + 1
                if loop.unit == "step":
                    bar.update()
                    bar.set_postfix(loss=f"{value:.4f}")
                if loop.total_steps is not None and step >= loop.total_steps:
                    break
            if loop.unit == "epoch":
                bar.update()
            record: dict[str, Any] = {"epoch": epoch, "steps": step, "train_loss": summed / max(seen, 1),
                                      "train_seconds": round(time.perf_counter() - t0, 3)}
            if loop.evaluate is not None:
                t1 = time.perf_counter()
                metrics = loop.evaluate()
                score = float(metrics["score"])
                record.update({k: v for k, v in metrics.items() if k != "score"},
                              eval_seconds=round(time.perf_counter() - t1, 3))
            else:
                score = -record["train_loss"] if loop.select_on_loss else float(epoch)
            loop.history.append(record)
            if score > best_score + loop.min_delta:
                best_score, best_epoch, stale = score, epoch, 0
                if loop.keep_weights:
                    best_state = copy.deepcopy(loop.model.state_dict())
                loop.on_best(record)
            else:
                stale += 1
                if loop.evaluate is not None and loop.patience is not None and stale >= loop.patience:
                    break
            if loop.total_steps is not None and step >= loop.total_steps:
                break
    finally:
        bar.close()
    return EpochResult(best_epoch, best_state)


def clip_gradients(model: Any, max_norm: float) -> None:
    """Clip the gradients of the trained parameters to one global norm, in a few batched kernels."""
    import torch

    grads = [p for p in model.parameters() if p.grad is not None]
    if grads:
        torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=True)
