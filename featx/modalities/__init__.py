"""Modalities as registered parts (featx.modalities.base: the Modality base and the registry):
each one opens its inputs, loads its backbones and makes the featurizer, for a new extraction or
for a config it wrote before. The engine and `featurizer_for` ask this registry; they never name a
modality. The built-in ones register on import: a new modality is one package plus one line here
(or one `register_modality` call from outside featx)."""
from featx.modalities import image, text  # noqa: F401  (registration on import)
from featx.modalities.base import (
    MODALITIES,
    Modality,
    NoOptions,
    featurizer_for,
    given_choices,
    modality_named,
    modality_of,
    modality_options,
    open_source,
    register_modality,
)

__all__ = ["MODALITIES", "Modality", "NoOptions", "featurizer_for", "given_choices", "modality_named", "modality_of",
           "modality_options", "open_source", "register_modality"]
