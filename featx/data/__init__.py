"""Inputs (Sources): where rows come from. Tables of texts today (source.py)."""
from featx.data.base import Source
from featx.data.bundled import BUNDLED
from featx.data.readers import FORMATS
from featx.data.source import (
    InputSource,
    InputSummary,
    Record,
    describe_json,
    open_input,
    read_texts,
)

__all__ = ["BUNDLED", "FORMATS", "InputSource", "InputSummary", "Record", "Source", "describe_json", "open_input",
           "read_texts"]
