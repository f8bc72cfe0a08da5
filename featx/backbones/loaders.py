"""A backend is one loader: what runs a backbone's forward pass, registered by name.

The featurizers ask `load_backend(backbone, config)` for the forward pass of `config.backend`
and never branch on its name: None is torch's own (the featurizer runs the backbone's module),
else a callable that takes what the module takes (a text model: input_ids and attention_mask,
returning the hidden states at the config's layers, concatenated; an image module: normalised
pixels, returning its output). `auto` is resolved in one place, `resolve_backend`.

    register_backend(Loader("onnx", load=my_load, fits=my_fits))

and `featx extract --backend onnx` runs it, recorded as the config's `backend` (torch is
recorded as unset, so older stores keep their fingerprints).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featx.config import ExtractConfig
from featx.errors import ParameterError

TORCH = "torch"
AUTO = "auto"


def _fits_anything(backbone: Any, dtype: str, cache_layer: int | None) -> str | None:
    return None


@dataclass(frozen=True)
class Loader:
    """One backend: `load(backbone, config)` gives the forward pass (None: the backbone's torch
    module itself); `fits(backbone, compute dtype, cache_layer)` says why it cannot run this
    extraction (None: it can); `installed()` whether its package is there and `require()` raises
    the one line saying how to install it; `auto`: chosen by `--backend auto` where it fits and is
    installed; `batch_tokens`: its batch budget for texts on the CPU (None: torch's)."""

    name: str
    load: Callable[[Any, ExtractConfig], Callable[..., Any] | None]
    fits: Callable[[Any, str, int | None], str | None] = _fits_anything
    installed: Callable[[], bool] = lambda: True
    require: Callable[[], Any] = lambda: None
    auto: bool = False
    batch_tokens: int | None = None


LOADERS: dict[str, Loader] = {}


def register_backend(loader: Loader, *, replace: bool = False) -> Loader:
    """Make `loader` a backend `--backend` names; a second of a registered name is refused unless `replace`."""
    if loader.name in (AUTO, "") or (loader.name in LOADERS and not replace):
        raise ValueError(f"a backend named {loader.name!r} is registered already (or reserved)")
    LOADERS[loader.name] = loader
    return loader


def backend_named(name: str) -> Loader:
    if name not in LOADERS:
        raise ParameterError("backend", f"{name!r} is unknown: choose from {', '.join([*LOADERS, AUTO])}")
    return LOADERS[name]


def resolve_backend(requested: str, backbone: Any, dtype: str, cache_layer: int | None = None) -> str | None:
    """The config's `backend` field for `requested` (a name or auto): None for torch; a named
    backend that does not fit, or is not installed, is one line before anything loads; auto is the
    first auto backend that fits and is installed, else torch."""
    if requested == AUTO:
        for loader in LOADERS.values():
            if loader.auto and loader.fits(backbone, dtype, cache_layer) is None and loader.installed():
                return loader.name
        return None
    loader = backend_named(requested)
    if loader.name == TORCH:
        return None
    reason = loader.fits(backbone, dtype, cache_layer)
    if reason is not None:
        raise ParameterError("backend", f"{loader.name} {reason}")
    loader.require()
    return loader.name


def load_backend(backbone: Any, config: ExtractConfig) -> Callable[..., Any] | None:
    """The forward pass `config.backend` runs `backbone` with (None: the torch module's own)."""
    return backend_named(config.backend or TORCH).load(backbone, config)


def backend_batch_tokens(config: ExtractConfig) -> int | None:
    """The CPU batch budget for texts of `config.backend` (None: torch's)."""
    return backend_named(config.backend or TORCH).batch_tokens


def _openvino_fits(backbone: Any, dtype: str, cache_layer: int | None) -> str | None:
    if backbone.device.type != "cpu" or dtype not in ("fp32", "bf16", "int8") or cache_layer is not None:
        return "runs on the CPU, in fp32, bf16 or int8, without --cache-layer"
    if dtype == "int8" and not hasattr(backbone, "tokenizer"):
        return "runs int8 for text models only"
    if getattr(backbone, "static", False):
        return "runs transformer models; a static model is a table lookup, run in torch"
    if getattr(backbone, "preprocess", False) is None:  # a transformers vision model
        return ("runs image models given as torch modules (efficientnet-lite0, featx.module_backbone), not "
                "transformers vision models")
    return None


def _load_openvino(backbone: Any, config: ExtractConfig) -> Callable[..., Any]:
    from featx.backbones.openvino import CompiledImageModel, CompiledTextModel

    if config.dtype == "int8":  # quantized before the run, on the input's first rows
        from featx.backbones.int8 import int8_model

        return int8_model(backbone, config)
    if hasattr(backbone, "tokenizer"):
        return CompiledTextModel(backbone, config.layers, config.dtype)
    return CompiledImageModel(backbone, config.dtype)


def _require_openvino() -> Any:
    from featx.backbones.openvino import require_openvino

    return require_openvino()


register_backend(Loader(TORCH, load=lambda backbone, config: None))
# Measured faster than torch on every CPU kind tried (benchmarks/README.md, "Which backend"): auto
# picks it where it is installed and fits. Its text batch budget: 1,024 tokens (ibid.).
register_backend(Loader("openvino", load=_load_openvino, fits=_openvino_fits,
                        installed=lambda: importlib.util.find_spec("openvino") is not None,
                        require=_require_openvino, auto=True, batch_tokens=1024))

