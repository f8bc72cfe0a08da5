"""The store: one HDF5 file per split, read by FeatureStore, written window by window by StoreWriter.

Layout and guarantees: README "The store format" and "Guarantees".
"""
from featx.store.describe import format_info, summary_line
from featx.store.format import HDF5, HDF5Format, StoreFormat, Writer
from featx.store.h5 import stored_config
from featx.store.header import FORMAT, FORMAT_VERSION, StoreHeader
from featx.store.layout import StorePlan, matching_complete_store
from featx.store.reader import FeatureStore, open_store
from featx.store.writer import StoreWriter

__all__ = [
           "FORMAT",
           "FORMAT_VERSION",
           "HDF5",
           "FeatureStore",
           "HDF5Format",
           "StoreFormat",
           "StoreHeader",
           "StorePlan",
           "StoreWriter",
           "Writer",
           "format_info",
           "matching_complete_store",
           "open_store",
           "stored_config",
           "summary_line",
]
