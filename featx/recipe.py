"""The fine-tuning recipe shared by texts and images: its knobs, the optimizer and the schedule.

Defaults follow the classic recipe: AdamW (lr 2e-5, weight decay 0.01, none on biases
and norms), linear warm-up over 10 % of the steps then linear decay, gradient clipping
at 1.0, bf16 autocast where the hardware has fast bf16.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from featx.config import DEFAULT_MODEL, FINETUNE_POOLINGS
from featx.errors import FeatxError

FINETUNE_FORMAT = "featx-finetuned"


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe; everything that changes the trained model."""

    model: str = DEFAULT_MODEL
    pooling: str = "mean"
    epochs: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    batch_size: int = 16
    max_length: int = 128
    grad_clip: float = 1.0
    train_layers: int | None = None
    lora_rank: int | None = None
    dtype: str = "auto"
    seed: int = 0
    max_steps: int | None = None  # stop early (tests, budgets); None = all epochs

    def __post_init__(self) -> None:
        if self.pooling not in FINETUNE_POOLINGS:
            raise FeatxError(f"unknown pooling {self.pooling!r}: choose from {', '.join(FINETUNE_POOLINGS)}")
        if self.train_layers is not None and self.lora_rank is not None:
            raise FeatxError("choose one of --train-layers and --lora-rank")
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise FeatxError(f"{name.replace('_', '-')} must be at least 1")


def optimizer_and_schedule(model: torch.nn.Module, config: FinetuneConfig,
                           rows: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, int]:
    """AdamW over the trainable parameters, the warm-up/decay schedule, and the total steps."""
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    steps_per_epoch = math.ceil(rows / config.batch_size)
    total_steps = int(min(steps_per_epoch * config.epochs, config.max_steps or math.inf))
    warmup = max(1, int(config.warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))))
    return optimizer, scheduler, total_steps


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
