"""Heads trained on cached features (base.py: the protocol and registry; one file per kind)
and their safe on-disk form (trained.py)."""
from featx.heads.base import DEFAULT_HEADS, HEAD_KINDS, Head, make_head

# Each import below registers one head kind (featx.heads.base.register_head): a new kind is
# one file plus one line here.
from featx.heads.blocks import BlocksHead
from featx.heads.hybrid import HybridHead, TextVectors
from featx.heads.knn import KNNHead
from featx.heads.logreg import LogRegHead
from featx.heads.mlp import MLPHead
from featx.heads.ridge import RidgeHead
from featx.heads.trained import TrainedHead, parse_head_spec
from featx.heads.windows import WindowsHead

__all__ = ["DEFAULT_HEADS", "HEAD_KINDS", "BlocksHead", "Head", "HybridHead", "KNNHead", "LogRegHead", "MLPHead", "RidgeHead",
           "TextVectors", "TrainedHead", "WindowsHead", "make_head", "parse_head_spec"]
