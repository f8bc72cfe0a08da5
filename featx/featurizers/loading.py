"""The featurizer that reproduces a store's vectors: its config's backbone, loaded and checked."""
from __future__ import annotations

from typing import Any

import torch

from featx.backbones import Backbone, load_backbone
from featx.backbones.vision import ImageBackbone, load_image_backbone
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.featurizers.base import Featurizer
from featx.featurizers.image import ImageFeaturizer
from featx.featurizers.text import TextFeaturizer


def featurizer_for(config: ExtractConfig, *, device: str | torch.device = "auto",
                   backbone: Backbone | ImageBackbone | None = None, states_only: bool = False) -> Featurizer:
    """A featurizer giving the vectors `config` describes, refused when the backbone found under
    config.model is not the one the config was made with (weights, tokenizer or preprocessing).
    `states_only`: only the token states of a config that keeps them (the blocks above never run)."""
    if config.modality == "image":
        vision = backbone if isinstance(backbone, ImageBackbone) else load_image_backbone(config.model, device=device)
        found: tuple[Any, ...] = (vision.weights_sha256, vision.preprocess_json)
        if found != (config.weights_sha256, config.preprocess):
            raise FeatxError(f"the model found at {config.model} is not the one these vectors were made with "
                             "(weights or preprocessing differ)")
        return ImageFeaturizer(vision, config)
    text = backbone if isinstance(backbone, Backbone) else load_backbone(config.model, device=device)
    if (text.weights_sha256, text.tokenizer_sha256) != (config.weights_sha256, config.tokenizer_sha256):
        raise FeatxError(f"the model found at {config.model} is not the one this head was trained on "
                         "(weights or tokenizer differ)")
    return TextFeaturizer(text, config, states_only=states_only)
