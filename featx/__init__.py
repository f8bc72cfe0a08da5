"""featx: embed a dataset once with a frozen backbone, cache it in HDF5, train cheap heads."""
import os

# oneDNN keeps compiled primitives per input shape. Dynamic padding gives every batch
# its own shape, and with the default cache (1024 entries) a bf16 IMDB extraction on
# CPU grew from 0.8 to over 2.5 GB of RSS; with no cache it stays flat, for a cost we
# could not separate from noise (65.7 s vs 63.5 s on 3,000 reviews). oneDNN reads the
# variable when it first builds a primitive, so this must run before any CPU matmul;
# a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")

from featx._version import __version__
from featx.backbones import DEFAULT_MODEL, Backbone, load_backbone
from featx.config import ExtractConfig
from featx.data import open_input
from featx.errors import FeatxError
from featx.extract import embed_texts, extract, make_config
from featx.heads import LogRegHead, MLPHead, TrainedHead
from featx.predictor import Predictor
from featx.store import FeatureStore, open_store
from featx.train import mteb_protocol, train_head, train_heads

__all__ = [
    "DEFAULT_MODEL", "Backbone", "ExtractConfig", "FeatureStore", "FeatxError", "LogRegHead", "MLPHead", "Predictor",
    "TrainedHead", "__version__", "embed_texts", "extract", "load_backbone", "make_config", "mteb_protocol",
    "open_input", "open_store", "train_head", "train_heads",
]
