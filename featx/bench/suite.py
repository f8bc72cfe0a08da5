"""Benchmark suites: a TOML file naming one dataset, one backbone and the methods to compare."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx.atomic import child_path
from featx.errors import FeatxError
from featx.heads import DEFAULT_HEADS


@dataclass(frozen=True)
class Split:
    """One input of the suite: where it is and which columns to read."""

    path: str
    text_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    header: bool = True
    rows_mod: tuple[int, tuple[int, ...]] | None = None  # a holdout: see featx.data.InputSource
    # How the labels are read when they are not one class a row (featx.data.targets): multi_label,
    # label_columns, target, label_names, allow_empty_labels; and where ("COL=VALUE": one split of a file).
    read: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Suite:
    """Everything a benchmark run compares, on identical splits and seeds."""

    name: str
    model: str
    train: Split
    val: Split | None  # None: heads select on a held-out fraction of train, fine-tunes keep the last epoch
    test: Split
    dtype: str = "auto"
    seeds: tuple[int, ...] = (0,)
    max_length: int | None = None
    poolings: tuple[str, ...] = ("mean",)
    normalize: bool | None = None  # None: as the model's own embedding (see featx.extraction.engine.make_config)
    long: dict[str, Any] = field(default_factory=dict)  # [extract] long / stride / long_pooling / keep_windows
    heads: tuple[str, ...] = DEFAULT_HEADS
    mteb: dict[str, Any] | None = None
    tfidf: dict[str, Any] | None = None  # a [tfidf] table adds the TF-IDF + logistic regression baseline
    hybrid: dict[str, Any] | None = None  # a [hybrid] table adds TF-IDF stacked with the frozen vectors
    # A [blocks] table adds stores keeping token states (cache_layer, cache_dtype) and blocks heads
    # (specs) trained on them.
    blocks: dict[str, Any] | None = None
    finetune: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget_note: str = ""
    device: str = "auto"
    # A published figure on the same test set, cited ([anchor]: method, metric, score, source): shown
    # in the report beside the measured rows and marked as not measured here.
    anchor: dict[str, Any] | None = None


# A [data] entry's (or all entries') label-reading options, as featx.data.open_input names them.
READ_KEYS = ("multi_label", "label_columns", "target", "label_names", "allow_empty_labels", "where")


def load_suite(path: str | Path, data_dir: str | Path | None = None) -> Suite:
    """Read a suite file; ``{data}`` in input paths becomes $FEATX_DATA (default ../shared/data)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FeatxError(f"suite {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise FeatxError(f"suite {path} is not valid TOML: {e}") from None
    data = str(data_dir or os.environ.get("FEATX_DATA", "../shared/data"))
    relative_to = path.parent

    def place(text: str) -> str:
        return text.replace("{data}", data).replace("{suite}", str(relative_to))

    def split(name: str) -> Split:
        entry = raw.get("data", {}).get(name)
        if entry is None:
            raise FeatxError(f"suite {path} has no [data.{name}] entry")
        if isinstance(entry, str):
            entry = {"path": entry}
        defaults = {k: raw["data"][k] for k in ("text_column", "label_column", "id_column", "header", *READ_KEYS)
                    if k in raw["data"]}
        entry = {**defaults, **entry}
        rows_mod = entry.get("rows_mod")
        read = tuple((k, place(entry[k]) if k == "label_names" else entry[k]) for k in READ_KEYS if k in entry)
        return Split(path=place(entry["path"]), text_column=entry.get("text_column"),
                     label_column=entry.get("label_column"), id_column=entry.get("id_column"),
                     header=entry.get("header", True), rows_mod=(int(rows_mod[0]), tuple(rows_mod[1])) if rows_mod else None,
                     read=read)

    for name in raw.get("finetune", {}):
        child_path(".", name, f"suite {path}: fine-tuning variant")  # names become folder names
    try:
        return Suite(
            name=raw.get("name", path.stem), model=raw.get("model", "all-MiniLM-L6-v2"),
            train=split("train"), val=split("val") if "val" in raw.get("data", {}) else None, test=split("test"),
            dtype=raw.get("dtype", "auto"), seeds=tuple(raw.get("seeds", [0])),
            max_length=raw.get("extract", {}).get("max_length"),
            poolings=tuple(raw.get("extract", {}).get("poolings", ["mean"])),
            normalize=raw.get("extract", {}).get("normalize"),
            long={k: v for k, v in raw.get("extract", {}).items() if k in ("long", "stride", "long_pooling",
                                                                                  "keep_windows")},
            heads=tuple(raw.get("heads", {}).get("specs", DEFAULT_HEADS)),
            mteb=raw.get("mteb"), tfidf=raw.get("tfidf"), hybrid=raw.get("hybrid"),
            blocks=raw.get("blocks"), finetune=dict(raw.get("finetune", {})),
            budget_note=raw.get("budget_note", ""), device=raw.get("device", "auto"), anchor=_anchor(raw, path),
        )
    except TypeError as e:
        raise FeatxError(f"suite {path}: {e}") from None


def _anchor(raw: dict[str, Any], path: Path) -> dict[str, Any] | None:
    anchor = raw.get("anchor")
    if anchor is None:
        return None
    missing = [key for key in ("method", "metric", "score", "source") if key not in anchor]
    if missing:
        raise FeatxError(f"suite {path}: [anchor] needs {', '.join(missing)} (a published figure is cited)")
    return dict(anchor)
