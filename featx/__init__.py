"""featx: embed a dataset once with a frozen backbone, cache it in HDF5, train cheap heads."""
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
