"""The Modality base and the registry: what a modality declares and does, and the one table the
engine, `featx.encode`, `featurizer_for` and the CLI ask. None of them names a modality.

A modality subclasses `Modality` and declares, as class attributes:

- ``name`` (the config's `modality`), ``default_window_rows`` (its commit unit) and
  ``default_model`` (what --model defaults to; None: it must be given);
- ``row_flags``: the per-row uint8 flags its stores keep, by name, with what a 1 says (text:
  "truncated"; image: "truncated" and "skipped"); its featurizer's `prepare` returns them by name;
- ``section``: its slice of ExtractConfig (a featx.config.ConfigSection: its fields and rules);
- ``options``: a dataclass of the extraction options only it takes (each field's metadata may
  hold a "help" line and a featx.constraints "constraint"); the CLI's flags are made from it,
  and `featx.extract` takes each field as a keyword;
- ``uses``: the options of featx.options' shared groups beyond the core (CORE_OPTIONS) it reads
  (text: max_length, long, ...; image: skip_bad). Any other set option is refused in one line.

and implements `claims`, `open`, `takes`, `records`, `extraction` and `featurizer_for` (below);
`finetune` and `load_finetuned` refuse unless it overrides them. Optionally
``frontier_backbones`` ((name, model, work per row against the first), cheapest first) and
``frontier_finetune`` (FinetuneConfig fields as (name, value) pairs): what `featx frontier` measures.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from featx.config import SECTIONS, ConfigSection, ExtractConfig, register_section
from featx.data import Source
from featx.errors import FeatxError, ParameterError
from featx.options import CORE_OPTIONS, FIELD_GROUP, ExtractOptions


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A modality that takes no option of its own."""


class Modality:
    """What a modality declares (see the module) and the defaults of what it may leave out."""

    name: ClassVar[str]
    default_window_rows: ClassVar[int]
    default_model: ClassVar[str | None] = None
    row_flags: ClassVar[Mapping[str, str]] = {}
    section: ClassVar[type[ConfigSection]] = ConfigSection
    options: ClassVar[type] = NoOptions
    uses: ClassVar[frozenset[str]] = frozenset()
    frontier_backbones: ClassVar[tuple[tuple[str, str, float], ...]] = ()
    frontier_finetune: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def claims(self, input: str | Path, choices: dict[str, Any]) -> bool:
        """True when a path (read with the reading `choices`, e.g. an image_column) is this
        modality's input (text, the fallback, claims any)."""
        return False

    def open(self, input: str | Path, **choices: Any) -> Source:
        """The Source over `input`, refusing in one line a reading choice it does not take."""
        raise NotImplementedError

    def takes(self, item: Any) -> bool:
        """True when an in-memory input is this modality's (featx.encode picks by the first)."""
        return False

    def records(self, inputs: Sequence[Any]) -> list[Any]:
        """In-memory inputs as the records its featurizer prepares."""
        raise NotImplementedError

    def extraction(self, source: Any, model: Any, options: ExtractOptions) -> tuple[Any, int, int | None]:
        """``(featurizer, default window rows, state_dim)`` for a new extraction. `options` are
        checked already (`check_options`); `options.model.backend` is resolved by the engine."""
        raise NotImplementedError

    def featurizer_for(self, config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                       states_only: bool = False) -> Any:
        """The featurizer reproducing `config`'s vectors, refused when the backbone found is not the
        one the config was made with."""
        raise NotImplementedError

    def finetune(self, train: Any, out: Any, **kwargs: Any) -> Any:
        raise FeatxError(f"{self.name} inputs cannot be fine-tuned: train a head on their store")

    def load_finetuned(self, folder: Any, device: Any = "auto") -> Any:
        raise FeatxError(f"{folder} holds a fine-tuned {self.name} model, which featx cannot load")

    def check_options(self, options: ExtractOptions, source: Source) -> None:
        """Refuse in one line an option set to other than its default that this modality does not
        declare: not a core option, not one of its `uses`, not a field of its `options`."""
        own = {f.name for f in dataclasses.fields(self.options)}
        for name in [*options.changed(), *options.modality]:
            if name in CORE_OPTIONS or name in self.uses or name in own:
                continue
            takers = [m.name for m in MODALITIES.values() if name in m.uses or name in _option_names(m)]
            where = f"applies to {' and '.join(takers)} inputs" if takers else "is taken by no modality"
            raise ParameterError(name, f"{where}; {source.name} is read as {self.name} inputs")

    def own_options(self, options: ExtractOptions) -> Any:
        """This modality's `options`, from the keywords of `options.modality` it declares (the rest
        are checked by `check_options`), each checked by its field's constraint."""
        own = {f.name: f for f in dataclasses.fields(self.options)}
        given = {name: value for name, value in options.modality.items() if name in own}
        for name, value in given.items():
            constraint = own[name].metadata.get("constraint")
            if constraint is not None and value is not None:
                constraint.check(name, value)
        return self.options(**given)


MODALITIES: dict[str, Modality] = {}
_FALLBACK = "text"


def _option_names(modality: Modality) -> set[str]:
    return {f.name for f in dataclasses.fields(modality.options)}


def register_modality(modality: Modality, *, replace: bool = False) -> Modality:
    """Add a modality to the registry and its config section to ExtractConfig's; returns it. A
    second modality of a registered name is refused unless `replace`; so is an option of its own
    named like a shared option or one another modality declares differently."""
    if modality.name in MODALITIES and not replace:
        raise ValueError(f"a modality named {modality.name!r} is registered already: pass replace=True to replace it")
    for field in dataclasses.fields(modality.options):
        if field.name in CORE_OPTIONS or field.name in FIELD_GROUP:
            raise ValueError(f"{modality.name}'s option {field.name!r} is named like a shared option of featx.extract")
    if SECTIONS.get(modality.name, modality.section) is not modality.section and not replace:
        raise ValueError(f"configs of {modality.name!r} have another section registered already")
    register_section(modality.name, modality.section)
    MODALITIES[modality.name] = modality
    return modality


def modality_options() -> dict[str, dataclasses.Field[Any]]:
    """Every registered modality's own options, by name (for featx.extract's keywords and the CLI)."""
    return {f.name: f for m in MODALITIES.values() for f in dataclasses.fields(m.options)}


def modality_named(name: str) -> Modality:
    """The registered modality `name`; one line listing the known ones otherwise."""
    if name not in MODALITIES:
        raise FeatxError(f"modality {name!r} is not registered (registered: {', '.join(sorted(MODALITIES))})")
    return MODALITIES[name]


def modality_of(input: str | Path | Any, choices: dict[str, Any] | None = None) -> Modality:
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


def given_choices(choices: dict[str, Any]) -> list[str]:
    """The reading choices set to something other than their default (None; header True)."""
    return [name for name, value in choices.items() if value is not None and not (name == "header" and value)]


def featurizer_for(config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                   states_only: bool = False) -> Any:
    """A featurizer giving the vectors `config` describes (its modality's), refused when the backbone
    found under config.model is not the one the config was made with. `states_only`: only the token
    states of a text config that keeps them (the blocks above never run)."""
    return modality_named(config.modality).featurizer_for(config, device=device, backbone=backbone,
                                                          states_only=states_only)


__all__ = ["MODALITIES", "Modality", "NoOptions", "featurizer_for", "given_choices", "modality_named",
           "modality_of", "modality_options", "open_source", "register_modality"]
