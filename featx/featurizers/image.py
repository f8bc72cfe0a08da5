"""Images: decode and preprocess in parallel threads, pool one forward pass per batch.

`prepare` decodes a window's images on a thread pool (Pillow releases the GIL while it
decodes and resizes), applies EXIF orientation and converts to RGB, then resizes and
crops (featx's own ImagePreprocess: uint8 pixels, normalised on the device in
`forward`) or runs the transformers image processor (float pixels). It runs in the
engine's prefetch thread, so the next window decodes while this one is in the model.

An image that cannot be decoded stops the run with one line naming it, or with
``skip_bad`` is counted: its row keeps its place, its vector is NaN and its
``skipped`` flag is 1 in the store (heads leave such rows out, and say how many).

A torch module runs with its batch norms folded into the convolutions (torch.fx, when
the module traces) and in channels-last layout: with the CPU runner's two workers, featx
extracts CIFAR-10 with EfficientNet-Lite0 at 2.15x the images/s of a plain Pillow +
DataLoader loop on 2 cores, the vectors' cosine to the loop's above 0.9999995
(benchmarks/bench_extract.py --images).
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from featx.backbones.loaders import load_backend, resolve_backend
from featx.backbones.vision import ImageBackbone
from featx.config import DEFAULT_BACKEND, ExtractConfig
from featx.data.images import array_sha256
from featx.errors import FeatxError, InputError, ParameterError, first_line
from featx.hardware import compute_context, torch_dtype
from featx.pooling import IMAGE_POOLINGS_BY_NDIM, l2_normalized, pool_image_output, prefix_tokens

# Pillow warns (on stderr) about images between its limit and twice it; featx checks sizes itself
# (MAX_PIXELS, twice Pillow's limit), so the warning would only break the one-line output.
warnings.filterwarnings("ignore", message="Image size .* could be decompression bomb")

CPU_BATCH_IMAGES = 32
GPU_BATCH_IMAGES = 256
# Large enough for any photo, small enough that a decompression bomb is refused (Pillow's check).
MAX_PIXELS = 178_956_970


def decode_image(data: Any) -> Any:
    """An RGB PIL image from encoded bytes, a uint8 array (H x W, or H x W x 1/3/4) or a PIL image;
    EXIF orientation applied. Raises ValueError or OSError with the reason."""
    from PIL import Image, ImageOps

    if isinstance(data, (bytes, bytearray, memoryview)):
        if not len(data):
            raise ValueError("the file is empty (0 bytes)")
        with _opened(data) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise ValueError(f"{opened.width} x {opened.height} pixels is more than featx decodes "
                                 f"({MAX_PIXELS:,} at most)")
            opened.load()  # a truncated or corrupt file fails here, not later
            image = ImageOps.exif_transpose(opened)
    elif isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (1, 3, 4)):
            raise ValueError(f"an array image must be uint8 H x W or H x W x 1/3/4, got {data.dtype} {data.shape}")
        image = Image.fromarray(data[:, :, 0] if data.ndim == 3 and data.shape[2] == 1 else data)
    elif isinstance(data, Image.Image):
        image = data
    else:
        raise ValueError(f"{type(data).__name__} is not an image (give bytes, a uint8 array or a PIL image)")
    if image.width < 1 or image.height < 1:
        raise ValueError("the image has no pixels")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = Image.fromarray(to_8bit(np.asarray(image)), mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


def _opened(data: bytes | bytearray | memoryview) -> Any:
    """Pillow's image for encoded bytes; its refusals as ValueErrors that read well in one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its text names the BytesIO object, not the file
        raise ValueError("not an image format Pillow can read (or the file is damaged)") from None
    except Image.DecompressionBombError:  # the header claims more than twice Pillow's limit
        raise ValueError(f"its header claims more than {MAX_PIXELS:,} pixels, more than featx decodes") from None


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels of a 16-bit, 32-bit integer or float grey image, scaled by its range:
    0..65535 for 16-bit ones (Pillow's I;16 modes); for 32-bit integers (mode I) 0..255 or
    0..65535, whichever holds the largest value; for floats (mode F) 0..1; an image with
    values outside those, from its own minimum to its maximum. Pillow's own conversion
    clips instead, so a 16-bit picture came out nearly white."""
    values = pixels.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(values).all():
        raise ValueError("the image holds NaN or infinite pixel values")
    if pixels.dtype.kind == "u" and pixels.dtype.itemsize == 2:
        scale_low, scale_high = 0.0, 65535.0
    elif pixels.dtype.kind in "iu" and low >= 0 and high <= 65535:
        scale_low, scale_high = 0.0, 255.0 if high <= 255 else 65535.0
    elif pixels.dtype.kind == "f" and low >= 0 and high <= 1:
        scale_low, scale_high = 0.0, 1.0
    else:
        scale_low, scale_high = low, max(high, low + 1e-12)
    return np.rint((values - scale_low) * (255.0 / (scale_high - scale_low))).clip(0, 255).astype(np.uint8)


def image_hashes(records: Sequence[Any]) -> np.ndarray:
    """(n, 32) uint8: sha256 of each image's encoded bytes (or of its pixels, for arrays)."""
    digests = b"".join(hashlib.sha256(r.data).digest() if isinstance(r.data, (bytes, bytearray))
                       else array_sha256(r.data) for r in records)
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)


def model_inputs(backbone: ImageBackbone, images: Sequence[Any]) -> list[np.ndarray]:
    """Each decoded image as the model takes it: (crop, crop, 3) uint8 pixels under featx's own
    preprocessing (normalised later, on the device), or the image processor's float (3, H, W)."""
    if backbone.preprocess is not None:
        return [backbone.preprocess.apply(image) for image in images]
    pixels = backbone.processor(images=list(images), return_tensors="np")["pixel_values"]
    return [np.asarray(p, dtype=np.float32) for p in pixels]


def normalized(backbone: ImageBackbone, pixels: torch.Tensor) -> torch.Tensor:
    """Float (B, 3, H, W) model input from a collated batch: uint8 (B, H, W, 3) pixels are
    normalised with the backbone's mean and std; processor output passes through."""
    if backbone.preprocess is None:
        return pixels
    mean = torch.tensor(backbone.preprocess.mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.preprocess.std, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.permute(0, 3, 1, 2).float() - mean) / std


def inference_module(module: torch.nn.Module) -> torch.nn.Module:
    """The module with batch norms folded into convolutions (when torch.fx can trace it), in
    channels-last layout: the same function, fewer passes over memory."""
    try:
        from torch.fx.experimental.optimization import fuse

        module = fuse(module)
    except Exception:  # an untraceable module runs as it is, only slower
        pass
    prepared: torch.nn.Module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return prepared


class ImageFeaturizer:
    """An image backbone under one ExtractConfig (modality "image")."""

    def __init__(self, backbone: ImageBackbone, config: ExtractConfig, skip_bad: bool | None = None) -> None:
        """`skip_bad`: count undecodable images instead of stopping; None where the caller
        offers no such choice (a predictor), so the message does not advise one."""
        self.backbone, self.config, self.skip_bad = backbone, config, skip_bad
        self.device = backbone.device
        self.poolings = config.poolings
        self.token_outputs: tuple[str, ...] = ()  # images keep no token states
        self.store_dtype = config.store_dtype
        self._model = inference_module(backbone.model) if backbone.preprocess is not None else backbone.model
        # Another backend than torch (--backend openvino) runs the module; preprocessing, batching and
        # pooling are unchanged.
        self._backend_forward = load_backend(backbone, config)
        self._all_states = config.layers != (-1,)
        if backbone.preprocess is not None and self._all_states:
            raise ParameterError("layers", f"{backbone.name} gives one feature map: only -1 applies")
        # The runners move batches to the device; this probe bypasses them, so it moves its own.
        blank = {k: v.to(self.device) for k, v in self.collate(self._items([_blank()])).items()}
        probe = self.forward(blank, check=True)
        self.dim = int(next(iter(probe.values())).shape[1])

    def content_hashes(self, records: Sequence[Any]) -> np.ndarray:
        return image_hashes(records)

    def default_batch_cost(self) -> int:
        return GPU_BATCH_IMAGES if self.device.type == "cuda" else CPU_BATCH_IMAGES

    def prepare(self, records: Sequence[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
        def one(record: Any) -> Any:
            try:
                return self._items([decode_image(record.data)])[0]
            except (OSError, ValueError, SyntaxError, MemoryError) as e:  # Pillow's ways of refusing a file
                reason = first_line(e)
                if not self.skip_bad:
                    hint = "" if self.skip_bad is None else \
                        ", or pass --skip-bad to skip unreadable images (counted in the store)"
                    raise InputError(f"cannot decode image {record.origin}: {reason}; fix or remove it{hint}") from None
                return None

        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="featx-decode") as pool:
            decoded = list(pool.map(one, records))
        skipped = np.fromiter((item is None for item in decoded), dtype=np.uint8, count=len(decoded))
        return decoded, {"truncated": np.zeros(len(decoded), dtype=np.uint8), "skipped": skipped}

    def _items(self, images: Sequence[Any]) -> list[np.ndarray]:
        return model_inputs(self.backbone, images)

    def cost(self, item: Any) -> int:
        return 1

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return {"pixels": torch.from_numpy(np.stack(items))}

    def forward(self, batch: dict[str, torch.Tensor], check: bool = False) -> dict[str, torch.Tensor]:
        pixels = batch["pixels"]
        weights = next(self._model.parameters()).dtype
        with torch.inference_mode(), compute_context(self.device, self.config.dtype, weights):
            if self.backbone.preprocess is not None:  # uint8 (B, H, W, 3) -> normalised (B, 3, H, W)
                x = normalized(self.backbone, pixels)
                out = self._model(x.to(weights).contiguous(memory_format=torch.channels_last)) \
                    if self._backend_forward is None else self._backend_forward(x)
                pooled = self._pool_output(out, None, check)
            else:
                output = self._model(pixel_values=pixels.to(weights), output_hidden_states=self._all_states)
                states = [output.hidden_states[i] for i in self.config.layers] if self._all_states \
                    else [output.last_hidden_state]
                parts = [self._pool_output(s, getattr(output, "pooler_output", None), check, pixels.shape[-2:])
                         for s in states]
                pooled = {name: torch.cat([p[name] for p in parts], dim=-1) for name in self.poolings}
        pooled = {name: v.float() for name, v in pooled.items()}
        if self.config.normalize:
            pooled = l2_normalized(pooled)
        return pooled

    def _pool_output(self, out: torch.Tensor, pooler: torch.Tensor | None, check: bool,
                     image_size: Any = None) -> dict[str, torch.Tensor]:
        """Each pooling of a feature map (B, C, H, W), token states (B, T, D) or vectors (B, D)."""
        result = {}
        prefix = prefix_tokens(out.shape[1], image_size, self.backbone.patch_size) if out.ndim == 3 else 0
        for name in self.poolings:
            if name in IMAGE_POOLINGS_BY_NDIM.get(out.ndim, ()):
                if name == "cls" and prefix < 1 and check:
                    raise ParameterError("pooling", f"cls: {self.backbone.name} has no class token")
                result[name] = pool_image_output(out, name, prefix)
            elif name == "pooler" and (pooler is not None or out.ndim == 2):
                result[name] = pooler if pooler is not None else out
            else:
                raise ParameterError("pooling", f"{name} does not apply to {self.backbone.name} (output of shape "
                                                f"{tuple(out.shape)}; {'pooler' if out.ndim == 2 else 'mean, max'} does)")
        return result

    def cast_weights(self) -> None:
        wanted = torch_dtype(self.config.dtype)
        current = next(self._model.parameters()).dtype
        if current == wanted:
            return
        if current != torch.float32:
            raise FeatxError(f"{self.backbone.name} was cast to {current} for an earlier run; load it again")
        self._model.to(wanted)


def make_image_config(backbone: ImageBackbone, *, pooling: Sequence[str] | str | None = None,
                      layers: str | Sequence[int] = "-1", normalize: bool | None = None, dtype: str = "auto",
                      store_dtype: str = "float32", backend: str = DEFAULT_BACKEND) -> ExtractConfig:
    """The ExtractConfig of `backbone` on images. Default pooling: mean (the global average
    pool) for a torch module or a convolutional map, cls for a ViT-like transformers model.
    `backend`: torch, openvino (a torch module on the CPU, in fp32 or bf16) or auto (openvino
    where it is installed and applies, else torch)."""
    from featx.hardware import resolve_dtype
    from featx.options import parse_layers

    if pooling is None:
        pooling = ("cls",) if backbone.patch_size is not None else ("mean",)
    poolings = tuple(p.strip() for p in pooling.split(",")) if isinstance(pooling, str) else tuple(pooling)
    compute = resolve_dtype(dtype, backbone.device)
    return ExtractConfig(model=backbone.name, weights_sha256=backbone.weights_sha256, modality="image",
                         preprocess=backbone.preprocess_json, poolings=poolings,
                         layers=parse_layers(layers if isinstance(layers, str) else tuple(layers)),
                         normalize=bool(normalize), dtype=compute, store_dtype=store_dtype,
                         backend=resolve_backend(backend, backbone, compute),
                         structure_sha256=backbone.structure_sha256)


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (64, 64), (127, 127, 127))
