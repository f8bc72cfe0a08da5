"""Fine-tuning baselines: `finetune` hands an input to its modality's (texts:
featx.finetune.texts, images: featx.finetune.images; the recipe and the one loss per task:
featx.finetune.recipe; fine-tuned predictors as scikit-learn classifiers: featx.finetune.classifier),
and `load_finetuned` reads any checkpoint folder back as a predictor, by the modality its
``finetune.json`` names. The modalities are imported inside the functions: they import this
package's recipe and baselines.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featx.data import Source
from featx.errors import DamagedError
from featx.finetune.recipe import FinetuneConfig as FinetuneConfig  # re-exported: featx.finetune.FinetuneConfig

if TYPE_CHECKING:  # scikit-learn's import (1 s) waits until a fine-tuned model is loaded
    from featx.finetune.classifier import PretrainedClassifier


def finetune(train: Source, out: str | Path, *, val: Source | None = None,
             config: FinetuneConfig | None = None, device: str = "auto",
             progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` (default: the modality's model) on `train`, keep the best epoch (by
    validation accuracy) in `out`. Returns the run record also written to ``out/finetune.json``."""
    from featx.modalities import modality_of  # lazily: the modalities import this package's recipes

    result: dict[str, Any] = modality_of(train).finetune(train, out, val=val, config=config or FinetuneConfig(),
                                                         device=device, progress=progress)
    return result


# How each task's epochs are shown: (the epoch record's metric, its name), the first one the ranking's.
EPOCH_SHOWN = {"single": (("val_accuracy", "val accuracy"),),
               "multi": (("val_macro_f1", "val macro-F1 (thresholds tuned on val)"), ("val_micro_f1", "micro-F1"),
                         ("val_macro_f1_at_0.5", "macro-F1 at 0.5")),
               "regression": (("val_mean_pearson", "val mean r"), ("val_score", "mean R² (chooses the epoch)"))}


def summary_lines(record: dict[str, Any], folder: str | Path) -> list[str]:
    """One line per epoch (seconds, the task's validation metrics when there was a validation set),
    then which epoch was saved: the best by validation, or without validation the last."""
    lines = []
    for epoch in record["epochs"]:
        val = "".join(f", {name} {epoch[key]:.4f}" for key, name in EPOCH_SHOWN[record.get("task", "single")]
                      if epoch.get(key) is not None)
        lines.append(f"epoch {epoch['epoch']}: {epoch['train_seconds']:.1f} s{val}")
    which = "best epoch" if record["val_rows"] else "last epoch (no --val to choose by)"
    return lines + [f"{which} {record['best_epoch']} saved to {folder}"]


def is_finetuned_folder(folder: str | Path) -> bool:
    return (Path(folder) / "finetune.json").is_file()


def load_finetuned(folder: str | Path, device: str = "auto") -> PretrainedClassifier:
    """The predictor of a fine-tuning checkpoint, made by the modality its finetune.json names
    (``"modality"``; texts when it names none, as checkpoints made before images did)."""
    try:
        modality = json.loads((Path(folder) / "finetune.json").read_text(encoding="utf-8")).get("modality", "text")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise DamagedError(f"{folder}/finetune.json is damaged ({type(e).__name__}: {e})") from None
    from featx.modalities import modality_named

    predictor: PretrainedClassifier = modality_named(str(modality)).load_finetuned(folder, device=device)
    return predictor
