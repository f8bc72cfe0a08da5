"""Featurizers: from input rows to pooled vectors, one per modality (see base.py)."""
from featx.featurizers.base import Featurizer
from featx.featurizers.text import TextFeaturizer, pad_token_id, text_hashes, tokenize

__all__ = ["Featurizer", "TextFeaturizer", "pad_token_id", "text_hashes", "tokenize"]
