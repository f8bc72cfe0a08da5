"""The one epoch loop (featx.epochs) that fine-tuning and the torch heads train through."""
import numpy as np
import pytest
import torch

from featx.epochs import EpochLoop, run_epochs


def _loop(scores=None, **given):
    """A one-weight model fit to y = 2x; `scores`, when given, are the validation scores by epoch."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    seen = []

    def evaluate():
        seen.append(float(model.weight))
        return {"score": scores[len(seen) - 1], "val_thing": len(seen)}

    loop = EpochLoop(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     batches=lambda rng: np.array_split(rng.permutation(64), 4),
                     loss=lambda rows: (torch.nn.functional.mse_loss(model(x[rows]), 2 * x[rows]), len(rows)),
                     evaluate=evaluate if scores is not None else None, progress=False, **given)
    return loop, model, seen


def test_the_best_epoch_by_validation_is_kept_and_patience_stops():
    loop, _, seen = _loop(scores=[0.1, 0.5, 0.4, 0.3, 0.2, 0.9], epochs=6, patience=2)
    result = run_epochs(loop)
    assert [r["epoch"] for r in loop.history] == [1, 2, 3, 4]  # two epochs without a better score than 0.5
    assert result.best_epoch == 2 and "score" not in loop.history[0] and loop.history[1]["val_thing"] == 2
    assert float(result.best_state["weight"]) == pytest.approx(seen[1])  # the weights as they were at epoch 2
    assert len(loop.losses) == 16 and loop.history[-1]["steps"] == 16


def test_without_validation_the_last_epoch_or_the_lowest_training_loss():
    loop, _, _ = _loop(epochs=3)
    assert run_epochs(loop).best_epoch == 3
    loop, _, _ = _loop(epochs=5, select_on_loss=True)
    result = run_epochs(loop)
    losses = [r["train_loss"] for r in loop.history]
    assert result.best_epoch == 1 + int(np.argmin(losses)) and losses[-1] < losses[0]


def test_total_steps_end_the_run_inside_an_epoch():
    loop, _, _ = _loop(epochs=10, total_steps=6)
    run_epochs(loop)
    assert len(loop.losses) == 6 and [r["steps"] for r in loop.history] == [4, 6]
