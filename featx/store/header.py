"""A store's header: its HDF5 attributes as one typed record, written by the writer (and merge)
and read by the reader, the resume check and merge, so every attribute's name, type and
encoding is spelled once.

Attributes that hold structures (hardware, timings, shard, merged_from) are JSON text; `config`
and `input` are canonical JSON, compared as written. Stores made before an attribute existed
read with its default (row_offset 0, no creation time, the config's dtype).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx._version import __version__
from featx.atomic import utc_stamp
from featx.errors import DamagedError, FeatxError

FORMAT = "featx-store"
FORMAT_VERSION = 1
# What a store cannot be read without; the rest have defaults for stores made before them.
REQUIRED = ("format_version", "fingerprint", "config", "n_rows", "n_done", "complete")
_JSON = ("hardware", "timings", "shard", "merged_from")
_OPTIONAL = ("shard", "merged_from")  # left out of the attributes when None


@dataclass
class StoreHeader:
    """Every attribute of a featx store (see the module docstring)."""

    fingerprint: str
    config: str
    n_rows: int
    n_done: int = 0
    complete: bool = False
    input: str = ""
    input_sha256: str = ""
    input_path: str = ""  # where the input was read (absolute), for `featx info --verify`; "" when not a path
    input_rows: int = 0
    row_offset: int = 0
    window_rows: int = 0
    dtype: str = ""
    hardware: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=utc_stamp)
    shard: list[int] | None = None  # [i, n] of a shard
    merged_from: list[str] | None = None  # the shard files of a merged store
    format_version: int = FORMAT_VERSION
    featx_version: str = __version__

    def to_attrs(self) -> dict[str, Any]:
        """The HDF5 attributes: JSON for structures, None fields left out, the format marker first."""
        attrs: dict[str, Any] = {"format": FORMAT}
        for name, value in dataclasses.asdict(self).items():
            if value is None and name in _OPTIONAL:
                continue
            attrs[name] = json.dumps(value, sort_keys=True) if name in _JSON else value
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Any, path: str | Path, required: tuple[str, ...] = REQUIRED) -> StoreHeader:
        """The header of the store at `path` from its attributes; one line when it is not a featx
        store, or an attribute in `required` is missing, or one cannot be read."""
        if attrs.get("format") != FORMAT:
            raise FeatxError(f"{path} is not a featx store (no format={FORMAT} attribute)")
        missing = [name for name in required if name not in attrs]
        if missing:
            raise DamagedError(f"{path} is damaged: attribute {missing[0]!r} is missing")
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            if spec.name not in attrs:
                continue
            raw = attrs[spec.name]
            try:
                values[spec.name] = json.loads(str(raw)) if spec.name in _JSON else _plain(raw, spec.type)
            except json.JSONDecodeError:
                raise DamagedError(f"{path} is damaged: attribute {spec.name!r} is not valid JSON") from None
            except (TypeError, ValueError):
                raise DamagedError(f"{path} is damaged: attribute {spec.name!r} is not a {spec.type}") from None
        if values.get("input"):
            try:
                json.loads(values["input"])
            except json.JSONDecodeError:
                raise DamagedError(f"{path} is damaged: attribute 'input' is not valid JSON") from None
        values.setdefault("fingerprint", "")
        values.setdefault("config", "")
        values.setdefault("n_rows", 0)
        return cls(**values)

    @property
    def input_choices(self) -> dict[str, Any]:
        """The input's read choices (JSON), {} for a store that records none."""
        choices: dict[str, Any] = json.loads(self.input) if self.input else {}
        return choices


def _plain(raw: Any, kind: Any) -> Any:
    """An HDF5 scalar attribute as the Python type the field declares."""
    text = str(kind)
    if text == "int":
        return int(raw)
    if text == "bool":
        return bool(raw)
    return str(raw)
