"""The fine-tuning baseline for images: the extraction backbone, its pooling, a linear classifier.

The recipe and its knobs are the text ones (featx.finetune.recipe): AdamW with warm-up and linear
decay, gradient clipping, `train_layers=K` for the top K blocks, `max_steps` for a budget.
Images go through exactly the preprocessing of extraction (no augmentation: the
baseline measures what training the backbone adds, not what augmentation adds).
Batch norms keep their ImageNet running statistics (they are in eval mode while
training): with the small batches a CPU affords, batch statistics are noise, and frozen
blocks must not drift. "Top K blocks" is the last K entries of the backbone's block
list (the longest ModuleList) and every parameter after them (EfficientNet's head
convolution; a ViT's final norm).

The encoded images stay in memory (CIFAR-10's 50,000 JPEGs are 75 MB); each batch is
decoded when it is used. A checkpoint folder holds ``finetune.json`` (recipe, classes,
steps, wall times, ``"modality": "image"``), ``backbone.safetensors`` (the whole
backbone's weights, loaded into the architecture ``recipe.model`` names) and
``classifier.safetensors``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx._version import __version__
from featx.atomic import save_tensors
from featx.backbones.vision import ImageBackbone, load_image_backbone
from featx.data import Source
from featx.data.images import ImageRecord
from featx.errors import FeatxError, ParameterError
from featx.featurizers.image import decode_image, inference_module, model_inputs, normalized
from featx.finetune.classifier import PretrainedClassifier
from featx.finetune.recipe import (
    FINETUNE_FORMAT,
    FinetuneConfig,
    FinetuneParts,
    cpu_state,
    finetune_epochs,
    load_weights,
    optimizer_and_schedule,
    read_checkpoint,
    save_checkpoint,
)
from featx.hardware import compute_context, describe_hardware, resolve_dtype
from featx.pooling import IMAGE_POOLINGS_BY_NDIM, pool_image_output, prefix_tokens


class ImageClassifier(torch.nn.Module):
    """Backbone -> pooling (a map's spatial mean or max; a ViT's cls or patch mean) -> linear."""

    def __init__(self, backbone: ImageBackbone, n_classes: int, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone.model
        self.pooling = pooling
        self.hf = backbone.preprocess is None
        size = _input_size(backbone)
        with torch.no_grad():
            probe = self._output(torch.zeros(1, 3, *size, device=backbone.device))
        # Fixed here, not read from each output, so the forward pass has no data-dependent branch
        # and torch.fx can trace it (folded batch norms at inference: featx.featurizers.image).
        self.output_ndim = probe.ndim
        if probe.ndim in IMAGE_POOLINGS_BY_NDIM and pooling not in IMAGE_POOLINGS_BY_NDIM[probe.ndim]:
            raise ParameterError("pooling", f"{pooling} does not apply to {backbone.name} (output of shape "
                                            f"{tuple(probe.shape)}; {', '.join(IMAGE_POOLINGS_BY_NDIM[probe.ndim])} do)")
        # The class and register tokens before the patches, counted as extraction counts them.
        self.prefix = prefix_tokens(probe.shape[1], size, backbone.patch_size) if probe.ndim == 3 else 0
        self.classifier = torch.nn.Linear(self._pool(probe).shape[1], n_classes).to(backbone.device)

    def _output(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(pixel_values=pixels).last_hidden_state if self.hf else self.backbone(pixels)
        return out

    def _pool(self, out: torch.Tensor, ndim: int | None = None) -> torch.Tensor:
        """The pooling extraction uses (featx.pooling.pool_image_output); vectors pass as they are."""
        ndim = out.ndim if ndim is None else ndim
        return pool_image_output(out, self.pooling, self.prefix) if ndim in (3, 4) else out

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._pool(self._output(pixels), self.output_ndim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.classifier(self.features(pixels).float())
        return result


def _input_size(backbone: ImageBackbone) -> tuple[int, int]:
    if backbone.preprocess is not None:
        return backbone.preprocess.crop, backbone.preprocess.crop
    pixels = model_inputs(backbone, [decode_image(np.zeros((64, 64, 3), dtype=np.uint8))])[0]
    return int(pixels.shape[-2]), int(pixels.shape[-1])


def _batch(backbone: ImageBackbone, records: Sequence[ImageRecord], pool: Any) -> torch.Tensor:
    """Normalised (B, 3, H, W) pixels of `records`, decoded on the thread pool."""
    items = list(pool.map(lambda r: model_inputs(backbone, [_decode(r)])[0], records))
    return normalized(backbone, torch.from_numpy(np.stack(items)).to(backbone.device))


def _decode(record: ImageRecord) -> Any:
    try:
        return decode_image(record.data)
    except (OSError, ValueError, SyntaxError) as e:
        raise FeatxError(f"cannot decode image {record.origin}: {e}") from None


def finetune_images(train: Source, out: str | Path, *, val: Source | None = None,
                    config: FinetuneConfig | None = None, device: str = "auto",
                    progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune the image backbone `config.model` on `train`; keeps the best epoch by validation
    accuracy (the last without `val`) in `out`. Returns the record written to out/finetune.json."""
    from concurrent.futures import ThreadPoolExecutor

    config = config or FinetuneConfig()
    if config.lora_rank is not None:
        raise FeatxError("--lora-rank applies to transformers text models; for images use --train-layers")
    torch.manual_seed(config.seed)
    loaded = load_image_backbone(config.model, device=device)
    dtype = resolve_dtype(config.dtype, loaded.device)
    summary = train.scan()
    if summary.classes is None:
        raise FeatxError(f"{train.name} has no labels: fine-tuning needs one class folder per label")
    if summary.task != "single":
        raise FeatxError(f"{train.name} has {summary.task} labels: image fine-tuning takes one class per image "
                         "(multi-label and regression fine-tuning are for texts; frozen image heads fit them)")
    records = list(train.records(summary))
    labels = np.array([r.label for r in records], dtype=np.int64)
    model = ImageClassifier(loaded, len(summary.classes), config.pooling)
    trainable = _make_trainable(model, config.train_layers)
    optimizer, scheduler, total_steps = optimizer_and_schedule(model, config, len(records))
    out = Path(out)
    record: dict[str, Any] = {
        "format": FINETUNE_FORMAT, "format_version": 1, "featx_version": __version__, "modality": "image",
        "recipe": dataclasses.asdict(config), "dtype": dtype, "classes": list(summary.classes),
        "preprocess": loaded.preprocess_json, "train_rows": len(records), "val_rows": 0,
        "trainable_parameters": trainable, "hardware": describe_hardware(loaded.device),
        "batch_norm": "running statistics kept (eval mode)", "epochs": [], "losses": []}
    with ThreadPoolExecutor(4, thread_name_prefix="featx-decode") as pool:
        def step_inputs(rows: np.ndarray) -> tuple[tuple[Any, ...], Any]:
            pixels = _batch(loaded, [records[i] for i in rows], pool)
            return (pixels,), torch.from_numpy(labels[rows]).to(loaded.device)

        def batches(rng: np.random.Generator) -> Iterator[np.ndarray]:
            order = rng.permutation(len(records))
            return (order[start:start + config.batch_size] for start in range(0, len(order), config.batch_size))

        evaluate = None if val is None else \
            (lambda: FinetunedImagePredictor.from_model(model, loaded, summary.classes or (), dtype).evaluate(val))

        def write_backbone(folder: Path) -> None:
            save_tensors(cpu_state(model.backbone), folder / "backbone.safetensors")

        parts = FinetuneParts(model=model, batches=batches, step_inputs=step_inputs,
                              save=lambda record: save_checkpoint(out, record, model.classifier, write_backbone),
                              device=loaded.device, dtype=dtype,
                              evaluate=evaluate, before_epoch=lambda: _freeze_batch_norms(model))
        return finetune_epochs(parts, config, record, optimizer, scheduler, total_steps, out, progress)


def _make_trainable(model: ImageClassifier, train_layers: int | None) -> int:
    """Freeze all but the top `train_layers` blocks (and what follows them); the trainable count."""
    model.requires_grad_(True)
    if train_layers is not None:
        blocks = max((m for m in model.backbone.modules() if isinstance(m, torch.nn.ModuleList)), key=len,
                     default=None)
        if blocks is None or not 0 <= train_layers <= len(blocks):
            raise FeatxError(f"--train-layers {train_layers}: the model has {0 if blocks is None else len(blocks)} "
                             "blocks")
        model.backbone.requires_grad_(False)
        names = [name for name, _ in model.backbone.named_parameters()]
        top = {id(p) for block in list(blocks)[len(blocks) - train_layers:] for p in block.parameters()}
        first_top = next((i for i, (_, p) in enumerate(model.backbone.named_parameters()) if id(p) in top),
                         len(names))
        for i, (_, param) in enumerate(model.backbone.named_parameters()):
            param.requires_grad_(i >= first_top)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _freeze_batch_norms(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


class FinetunedImagePredictor(PretrainedClassifier):
    """Images in (bytes, uint8 arrays, PIL images), labels out, from an image fine-tuning
    checkpoint; inference runs batch norms folded, channels last (featx.featurizers.image)."""

    modality = "image"

    def __init__(self, folder: str | Path, device: str = "auto") -> None:
        folder = Path(folder)
        self.name = str(folder)
        self.record, classes, dtype, (model_name, pooling) = read_checkpoint(folder, "model", "pooling")
        loaded = load_image_backbone(model_name, device=device)
        if loaded.preprocess_json != self.record.get("preprocess"):
            raise FeatxError(f"{model_name} now preprocesses images differently than when {folder} was trained")
        model = ImageClassifier(loaded, len(classes), pooling)
        for part in ("backbone", "classifier"):
            load_weights(getattr(model, part), folder / f"{part}.safetensors", f"{folder}/{part}.safetensors")
        self._setup(model, loaded, classes, dtype)

    @classmethod
    def from_model(cls, model: ImageClassifier, loaded: ImageBackbone, classes: Sequence[str],
                   dtype: str) -> FinetunedImagePredictor:
        predictor = cls.__new__(cls)
        predictor._setup(model, loaded, tuple(classes), dtype)
        return predictor

    def _setup(self, model: ImageClassifier, loaded: ImageBackbone, classes: tuple[str, ...], dtype: str) -> None:
        self.class_names = classes
        self.loaded, self.dtype = loaded, dtype
        self.model = inference_module(model.eval())

    @torch.inference_mode()
    def outputs(self, images: Sequence[Any]) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        records = [ImageRecord(i, image, -1, f"image {i}") for i, image in enumerate(images)]
        outputs = []
        with ThreadPoolExecutor(4, thread_name_prefix="featx-decode") as pool:
            for start in range(0, len(records), 64):
                pixels = _batch(self.loaded, records[start:start + 64], pool)
                with compute_context(self.loaded.device, self.dtype):
                    logits = self.model(pixels.contiguous(memory_format=torch.channels_last)).float()
                outputs.append(torch.softmax(logits, 1).cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)), dtype=np.float32)

    chunk_rows = 512  # decoded images: 77 MB a chunk at 224 x 224

    def record_input(self, record: Any) -> Any:
        return record.data
