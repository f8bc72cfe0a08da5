"""The store: one HDF5 file per split, read by FeatureStore, written window by window by StoreWriter.

Layout and guarantees: README "The store format" and "Guarantees".
"""
from featx.store.h5 import FORMAT, FORMAT_VERSION, stored_config
from featx.store.reader import FeatureStore, format_info, open_store, summary_line
from featx.store.writer import StorePlan, StoreWriter, matching_complete_store

__all__ = ["FORMAT", "FORMAT_VERSION", "FeatureStore", "StorePlan", "StoreWriter", "format_info",
           "matching_complete_store", "open_store", "stored_config", "summary_line"]
