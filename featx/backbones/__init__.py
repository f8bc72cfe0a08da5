"""Backbones: frozen pretrained models, found by name (folders.py) and loaded (text.py)."""
from featx.backbones.folders import MPNET_MODEL, resolve_model_folder
from featx.backbones.text import Backbone, load_backbone
from featx.config import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "MPNET_MODEL", "Backbone", "load_backbone", "resolve_model_folder"]
