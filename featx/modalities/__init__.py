"""Modalities as registered parts: each one opens its inputs, loads its backbones and makes the
featurizer, for a new extraction or for a config it wrote before. The engine and
`featurizer_for` ask this registry; they never name a modality.

A modality is an object with:

- ``name`` (the config's `modality`), ``default_window_rows`` (its commit unit), ``default_model``
  (what --model defaults to; None: it must be given) and ``row_flags`` (the per-row uint8 flags its
  stores keep: "truncated", and "skipped" where rows can be unreadable);
- ``claims(path, choices)``: True when a path (read with the reading `choices`, e.g. an
  image_column) is this modality's input (text is the fallback);
- ``open(path, **choices)``: the Source over it, refusing in one line a reading choice it does not
  take (choices: text_column, image_column, label_column, id_column, fmt, header, encoding, rows_mod);
- ``extraction(source, model, options)``: ``(featurizer, default window rows, state_dim)`` for a
  new extraction, refusing in one line the options that do not apply to it (`options` is a
  featx.options.ExtractOptions: every option, grouped; `options.changed()` names those the caller set);
- ``takes(item)``: True when an in-memory input is this modality's (featx.encode picks by the first);
- ``records(inputs)``: in-memory inputs (texts, images, arrays) as the records its featurizer prepares;
- ``check_config(config)``: the rules of the config fields it uses (ExtractConfig runs them);
- ``finetune(train, out, val=, config=, device=, progress=)``: fine-tune a backbone on its inputs
  (or refuse in one line);
- ``featurizer_for(config, device=, backbone=, states_only=)``: the featurizer reproducing
  `config`'s vectors, refused when the backbone found is not the one the config was made with;
- optionally ``frontier_backbones`` (``(name, model, work per row against the first)``, cheapest
  first) and ``frontier_finetune`` (FinetuneConfig fields, as (name, value) pairs): what `featx
  frontier` measures on its inputs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from featx.config import DEFAULT_BACKEND, MODALITY_RULES
from featx.data import Source
from featx.errors import FeatxError

MODALITIES: dict[str, Any] = {}
_FALLBACK = "text"


def register_modality(modality: Any, *, replace: bool = False) -> Any:
    """Add a modality to the registry, its config rules to ExtractConfig's; returns it. A second
    modality of a registered name is refused unless `replace` (it silently replaced the first)."""
    if modality.name in MODALITIES and not replace:
        raise ValueError(f"a modality named {modality.name!r} is registered already: pass replace=True to replace it")
    MODALITIES[modality.name] = modality
    MODALITY_RULES[modality.name] = modality.check_config
    return modality


def modality_named(name: str) -> Any:
    """The registered modality `name`; one line listing the known ones otherwise."""
    if name not in MODALITIES:
        raise FeatxError(f"modality {name!r} is not registered (registered: {', '.join(sorted(MODALITIES))})")
    return MODALITIES[name]


def modality_of(input: str | Path | Any, choices: dict[str, Any] | None = None) -> Any:
    """The modality of an input: a Source says so (`modality`, text when it does not); a path is
    claimed by the first registered modality that recognises it (read with `choices`), else text."""
    if not isinstance(input, (str, Path)):
        return modality_named(str(getattr(input, "modality", _FALLBACK)))
    for name, modality in MODALITIES.items():
        if name != _FALLBACK and modality.claims(input, choices or {}):
            return modality
    return modality_named(_FALLBACK)


def open_source(input: str | Path, **choices: Any) -> Source:
    """The Source over a path or a bundled name, opened by the modality that claims it with the
    reading `choices` set (None: the modality's default; header: True unless False)."""
    chosen = {name: value for name, value in choices.items() if value is not None}
    source: Source = modality_of(input, chosen).open(input, **chosen)
    return source


def requested_backend(options: Any) -> str:
    """The backend `options` ask for. None and "auto" first take the backend of a store already at
    the output, unless it is to be overwritten, so a store resumes, or is returned, as it was made.
    Otherwise None is the default (featx.config.DEFAULT_BACKEND)."""
    from featx.shards import shard_path
    from featx.store import stored_config

    backend, shard, output = options.model.backend, options.run.shard, options.output
    if backend in (None, "auto") and output is not None and not options.store.overwrite:
        found = stored_config(output if shard is None else shard_path(output, *shard))
        backend = backend if found is None else found.get("backend") or "torch"
    return str(backend or DEFAULT_BACKEND)


def given_choices(choices: dict[str, Any]) -> list[str]:
    """The reading choices set to something other than their default (None; header True)."""
    return [name for name, value in choices.items() if value is not None and not (name == "header" and value)]


def featurizer_for(config: Any, *, device: Any = "auto", backbone: Any = None, states_only: bool = False) -> Any:
    """A featurizer giving the vectors `config` describes (its modality's), refused when the backbone
    found under config.model is not the one the config was made with. `states_only`: only the token
    states of a text config that keeps them (the blocks above never run)."""
    return modality_named(config.modality).featurizer_for(config, device=device, backbone=backbone,
                                                          states_only=states_only)


# The built-in entries register themselves; a new modality is one package plus one line here.
from featx.modalities import image, text  # noqa: F401  (registration on import)
