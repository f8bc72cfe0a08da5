"""Modalities as registered parts: each one opens its inputs, loads its backbones and makes the
featurizer, for a new extraction or for a config it wrote before. The engine and
`featurizer_for` ask this registry; they never name a modality.

A modality is an object with:

- ``name`` (the config's `modality`) and ``default_window_rows`` (its commit unit);
- ``claims(path)``: True when a path is this modality's input (text is the fallback);
- ``open(path, text_column=, label_column=, id_column=)``: the Source over it;
- ``extraction(source, model, options)``: ``(featurizer, default window rows, state_dim)`` for a
  new extraction, refusing in one line the options that do not apply to it (`options` holds
  every keyword of featx.extract, and ``output``, ``shard``, ``overwrite``, ``cache_dir``);
- ``featurizer_for(config, device=, backbone=, states_only=)``: the featurizer reproducing
  `config`'s vectors, refused when the backbone found is not the one the config was made with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from featx.errors import FeatxError

MODALITIES: dict[str, Any] = {}
_FALLBACK = "text"


def register_modality(modality: Any) -> Any:
    """Add a modality to the registry (a later one of the same name replaces it); returns it."""
    MODALITIES[modality.name] = modality
    return modality


def modality_named(name: str) -> Any:
    """The registered modality `name`; one line listing the known ones otherwise."""
    if name not in MODALITIES:
        raise FeatxError(f"modality {name!r} is not registered (registered: {', '.join(sorted(MODALITIES))})")
    return MODALITIES[name]


def modality_of(input: str | Path | Any) -> Any:
    """The modality of an input: a Source says so (`modality`, text when it does not); a path is
    claimed by the first registered modality that recognises it, else read as text."""
    if not isinstance(input, (str, Path)):
        return modality_named(str(getattr(input, "modality", _FALLBACK)))
    for name, modality in MODALITIES.items():
        if name != _FALLBACK and modality.claims(input):
            return modality
    return modality_named(_FALLBACK)


def featurizer_for(config: Any, *, device: Any = "auto", backbone: Any = None, states_only: bool = False) -> Any:
    """A featurizer giving the vectors `config` describes (its modality's), refused when the backbone
    found under config.model is not the one the config was made with. `states_only`: only the token
    states of a text config that keeps them (the blocks above never run)."""
    return modality_named(config.modality).featurizer_for(config, device=device, backbone=backbone,
                                                          states_only=states_only)


# The built-in entries register themselves; a new modality is one package plus one line here.
from featx.modalities import image, text  # noqa: F401  (registration on import)
