"""Images as a modality: folders of class folders, zips, tables of paths and arrays; transformers
vision models, EfficientNet-Lite0 and any torch module with declared preprocessing."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from featx.backbones.vision import ImageBackbone, load_image_backbone
from featx.config import DEFAULT_BACKEND, DEFAULT_IMAGE_MODEL, ExtractConfig, ImageSection
from featx.data import Source
from featx.data.images import ImageRecord, is_image_input, open_images
from featx.errors import FeatxError, ParameterError
from featx.featurizers import Featurizer
from featx.featurizers.image import ImageFeaturizer, make_image_config
from featx.modalities.base import Modality, given_choices, register_modality
from featx.options import ExtractOptions

# An image window holds its decoded pixels (224 x 224 x 3 bytes each): 512 of them are 77 MB.
DEFAULT_IMAGE_WINDOW_ROWS = 512


class ImageModality(Modality):
    """Images, as decoded pixels through a vision backbone."""

    name = "image"
    default_window_rows = DEFAULT_IMAGE_WINDOW_ROWS
    default_model = DEFAULT_IMAGE_MODEL
    row_flags: ClassVar[Mapping[str, str]] = {"truncated": "never set for images (kept for the stores' shared layout)",
                 "skipped": "the image could not be decoded (skip_bad): NaN vectors, left out by heads"}
    section = ImageSection
    uses = frozenset({"skip_bad"})
    # featx frontier: the frozen backbone it measures and its top-2 fine-tune's recipe (the CIFAR-10
    # suite's top-2 variant: lr 3e-3, batch 32), one epoch.
    frontier_backbones = (("EfficientNet-Lite0", DEFAULT_IMAGE_MODEL, 1.0),)
    frontier_finetune = (("train_layers", 2), ("lr", 3e-3), ("batch_size", 32))

    def finetune(self, train: Any, out: Any, **kwargs: Any) -> Any:
        from featx.finetune.images import finetune_images  # when used: it imports scikit-learn (1 s)

        return finetune_images(train, out, **kwargs)

    def load_finetuned(self, folder: Any, device: Any = "auto") -> Any:
        from featx.finetune.images import FinetunedImagePredictor

        return FinetunedImagePredictor(folder, device=device)

    def claims(self, input: str | Path, choices: dict[str, Any]) -> bool:
        return choices.get("image_column") is not None or is_image_input(input)

    def open(self, input: str | Path, **choices: Any) -> Source:
        given = [name for name in given_choices(choices) if name not in ("image_column", "label_column")]
        if given:
            raise ParameterError(given[0], f"applies to texts; {input} is read as images")
        return open_images(input, image_column=choices.get("image_column"), label_column=choices.get("label_column"))

    def takes(self, item: Any) -> bool:
        """Encoded bytes, a PIL image or a uint8 array (H x W, or H x W x 3)."""
        if isinstance(item, (bytes, bytearray)) or hasattr(item, "getbands"):
            return True
        return isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim in (2, 3)

    def records(self, inputs: Sequence[Any]) -> list[ImageRecord]:
        return [ImageRecord(i, image, -1, f"image {i}") for i, image in enumerate(inputs)]

    def extraction(self, source: Source, model: Any, options: ExtractOptions) -> tuple[Featurizer, int, int | None]:
        if model is not None and not isinstance(model, (str, Path, ImageBackbone)):
            raise FeatxError(f"{getattr(model, 'name', model)} is not an image model; {source.name} is read as images")
        vision = model if isinstance(model, ImageBackbone) else load_image_backbone(
            str(model or DEFAULT_IMAGE_MODEL), device=options.model.device,
            trust_remote_code=options.model.trust_remote_code)
        vectors = options.vectors
        config = make_image_config(vision, pooling=vectors.pooling, layers=vectors.layers,
                                   normalize=vectors.normalize, dtype=options.model.dtype,
                                   store_dtype=options.store.store_dtype,
                                   backend=options.model.backend or DEFAULT_BACKEND)
        return ImageFeaturizer(vision, config, skip_bad=options.read.skip_bad), DEFAULT_IMAGE_WINDOW_ROWS, None

    def featurizer_for(self, config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                       states_only: bool = False) -> Featurizer:
        vision = backbone if isinstance(backbone, ImageBackbone) else load_image_backbone(config.model, device=device)
        if (vision.weights_sha256, vision.preprocess_json) != (config.weights_sha256, config.preprocess):
            raise FeatxError(f"the model found at {config.model} is not the one these vectors were made with "
                             "(weights or preprocessing differ)")
        if config.structure_sha256 is not None and vision.structure_sha256 != config.structure_sha256:
            raise FeatxError(f"the module given for {config.model} is not the one these vectors were made with "
                             "(same weights, another structure: strides, activations or layers differ)")
        return ImageFeaturizer(vision, config)


register_modality(ImageModality())
