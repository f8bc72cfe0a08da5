"""Datasets shipped inside the package, so a fresh machine has real data offline.

SST-2 (GLUE; Socher et al. 2013) is repacked from the GLUE TSVs: header
``label<TAB>sentence``, LF line ends, gzipped. Its test split is the labelled one.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SST2_LABELS = {"0": "negative", "1": "positive"}


@dataclass(frozen=True)
class BundledDataset:
    path: Path
    columns: dict[str, str]
    label_names: dict[str, str]


BUNDLED = ("sst2:train", "sst2:dev", "sst2:test")


def resolve_bundled(spec: str) -> BundledDataset | None:
    """The bundled dataset a name like ``sst2:dev`` refers to, or None for other inputs."""
    if spec not in BUNDLED:
        return None
    split = spec.split(":", 1)[1]
    path = Path(str(resources.files("featx.data") / "bundled" / f"sst2-{split}.tsv.gz"))
    return BundledDataset(path=path, columns={"text": "sentence", "label": "label"}, label_names=SST2_LABELS)
