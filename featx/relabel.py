"""One cache, other labels: a store whose vectors are another store's, and whose labels are read
again from the input it was made from, with other target choices (`featx relabel`).

The IMDB store extracted for sentiment holds every review's vector; the same reviews' ratings
(1-10) make a regression target, and no model needs to run again. The new store's vectors, ids,
hashes and flags are HDF5 virtual datasets over the original store (nothing is copied, so a
relabelled 100 GB cache costs kilobytes); only its labels are its own. Every row of the input is
checked to be the text of the store's row (by content sha256) before anything is written, and the
store, its fingerprint included, opens as any other: a missing or replaced original is refused on
open, as for a merged store (featx.store.reader).
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np

from featx.atomic import atomic_file, same_file, utc_stamp
from featx.data import Source, describe_json
from featx.errors import FeatxError, OutputError
from featx.store import open_store
from featx.store.view import write_view

_BLOCK_ROWS = 8192


def relabel_store(store_path: str | Path, source: Source, output: str | Path) -> Path:
    """Write `output`: the store at `store_path` with the labels `source` gives (see the module)."""
    from featx.data.targets import label_rows
    from featx.featurizers.text import text_hashes

    store_path, output = Path(store_path), Path(output)
    if same_file(output, store_path) or same_file(output, source.path):
        raise OutputError(f"the output {output} is the store or the input: choose another -o")
    with open_store(store_path) as store:
        if store.config.modality != "text" or getattr(source, "modality", "text") != "text":
            raise FeatxError(f"{store_path} is not a text store read from a table: relabel reads texts again")
        if store.header.shard is not None or store.header.row_offset:
            raise FeatxError(f"{store_path} is a shard: merge the shards first (featx merge)")
        summary = source.scan()
        if summary.classes is None:
            raise FeatxError(f"{source.name} has no labels to give {store_path}: name them (--label-column, "
                             "--multi-label, --label-columns or --target)")
        if summary.n_rows != len(store):
            raise FeatxError(f"{source.name} has {summary.n_rows:,} rows and {store_path} {len(store):,}: give the "
                             "input the store was extracted from, read with the same rows")
        hashes, labels = store.content_sha256, list[np.ndarray]()
        records = source.records(summary)
        for start in itertools.count(0, _BLOCK_ROWS):
            block = list(itertools.islice(records, _BLOCK_ROWS))
            if not block:
                break
            found = text_hashes([record.text for record in block])
            differs = np.flatnonzero((found != hashes[start:start + len(block)]).any(axis=1))
            if len(differs):
                row = start + int(differs[0])
                raise FeatxError(f"row {row + 1:,} of {source.name} is not the text of {store_path}'s row {row + 1:,} "
                                 "(content hashes differ): give the input the store was extracted from, read with the "
                                 "same columns")
            block_labels = label_rows(summary, [record.label for record in block])
            assert block_labels is not None  # the summary has classes
            labels.append(block_labels)
        values: np.ndarray = np.concatenate(labels)
        header = dataclasses.replace(store.header, input=describe_json(source), input_sha256=summary.sha256,
                                     input_path=str(Path(source.path).resolve()) if Path(source.path).exists() else "",
                                     created_at=utc_stamp(), merged_from=None,
                                     timings={"relabelled_from": store_path.name, "labels_from": source.name})
        with atomic_file(output, "store") as partial:
            write_view(partial, output.parent, store_path, header, values, summary.classes, summary.task)
    return output
