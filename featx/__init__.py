"""featx: embed a dataset once with a frozen backbone, cache it in HDF5, train cheap heads."""
import os

# oneDNN keeps compiled primitives per input shape. Dynamic padding gives every batch
# its own shape, and with the default cache (1024 entries) a bf16 IMDB extraction on
# CPU grew from 0.8 to over 2.5 GB of RSS; with no cache it stays flat, for a cost we
# could not separate from noise (65.7 s vs 63.5 s on 3,000 reviews). oneDNN reads the
# variable when it first builds a primitive, so this must run before any CPU matmul;
# a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")

from featx._version import __version__ as __version__
from featx.errors import FeatxError as FeatxError
from featx.errors import FeatxWarning as FeatxWarning

# The public names load on first use (PEP 562), so `featx --help`, and a Ctrl-C while
# torch is still importing, happen before any heavy import and inside the CLI's handler.
_LAZY = {
    "DEFAULT_MODEL": "featx.backbones", "Backbone": "featx.backbones", "load_backbone": "featx.backbones",
    "ExtractConfig": "featx.config", "open_input": "featx.data",
    "extract": "featx.extraction.engine", "ReadOptions": "featx.options", "ModelOptions": "featx.options",
    "VectorOptions": "featx.options", "StoreOptions": "featx.options", "RunOptions": "featx.options",
    "make_config": "featx.modalities.text", "LogRegHead": "featx.heads",
    "MLPHead": "featx.heads", "TrainedHead": "featx.heads", "Predictor": "featx.predictor",
    "load_predictor": "featx.predictor",
    "FeatureStore": "featx.store", "open_store": "featx.store", "mteb_protocol": "featx.mteb",
    "train_head": "featx.train", "train_heads": "featx.train", "Embedder": "featx.embedder",
    "encode": "featx.encoding", "Encoder": "featx.encoding",
    "ArraySource": "featx.data.images", "open_images": "featx.data.images", "ImagePreprocess": "featx.backbones.vision",
    "load_image_backbone": "featx.backbones.vision", "module_backbone": "featx.backbones.vision",
    "relabel_store": "featx.relabel",
}

__all__ = sorted([*_LAZY, "FeatxError", "FeatxWarning", "__version__"])


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'featx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
