"""ExtractConfig: everything that changes a vector, and its fingerprint."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from featx.errors import ParameterError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
POOLINGS = ("mean", "cls", "max", "last", "weightedmean", "mean_sqrt_len", "pooler")
FINETUNE_POOLINGS = ("mean", "cls", "max", "last")  # pooler is a frozen model's own head: not fine-tuned
DTYPES = ("fp32", "bf16", "fp16")  # what torch computes in
# Weights and activations quantized ahead of the run (featx.backbones.int8: OpenVINO, calibrated on the input).
QUANTIZED_DTYPES = ("int8",)
# How a store keeps its vectors: as floats, or compact (featx.store.quantize: int8 with one scale a
# dimension, binary signs packed into bits), computed as float32 either way.
STORE_DTYPES = ("float32", "float16", "int8", "binary")
LONG_MODES = ("truncate", "chunk")
LONG_POOLINGS = ("mean", "max")
STATE_DTYPES = ("float16", "float32")  # token states cached for a blocks head (--cache-layer)
COMPRESSIONS = ("lzf", "gzip")  # HDF5 filters a store's vectors may be written with (none when unset)
PROTOCOLS = ("full", "mteb")  # how featx train evaluates (featx.train, featx.mteb)
EXPORT_FORMATS = ("npy", "parquet")  # what `featx export` writes (featx.store.export)
# The stages of `featx bench`, in the order a suite runs them (featx.bench.runner).
BENCH_STAGES = ("extract", "heads", "mteb", "tfidf", "hybrid", "blocks", "finetune")
# A new store's backend when none is asked for: the first registered backend that `auto` may pick
# and that fits (featx.backbones.loaders: OpenVINO where it is installed and applies), else torch.
DEFAULT_BACKEND = "auto"
STATES = "states"  # their name: a featurizer's per-row sequence output, the store's dataset
# A featurizer's batch may carry this mask of a sequence output's real entries, when they are
# not the attention mask's (window vectors: rows x windows); runners read it, models never see it.
SEQUENCE_MASK = "sequence_mask"

# `model` names the backbone for people; the weights and tokenizer hashes identify
# it for the fingerprint, so the same weights found under another path or name
# still match an existing store.
_NOT_FINGERPRINTED = frozenset({"model"})
# The rule for fields added later, to the core or to a section: they default to None, and a field
# that is None is left out of the JSON and the fingerprint. A store written before the field existed
# therefore keeps its fingerprint, and so does every config that leaves it unset.


@dataclass(frozen=True)
class ConfigSection:
    """A modality's own fields of ExtractConfig (its `section`), and the rules they obey.

    A modality declares a subclass (featx.modalities.base.Modality.section): frozen, every field
    defaulting to None, no field named like a core field. Its set fields are flattened beside the
    core's into one canonical JSON, so a store's config reads as one flat object; `check` runs
    after the core's rules, with the whole config."""

    def check(self, config: ExtractConfig) -> None:
        """Refuse, in one line (ParameterError), what this modality's fields cannot be."""

    @property
    def sequences(self) -> str | None:
        """What the store's per-row sequences (dataset `states`) hold; None: nothing."""
        return None

    @property
    def sequence_dtype(self) -> str:
        return "float32"


# Each registered modality's section, by the config's `modality` (featx.modalities.register_modality
# adds a new one's; text's and image's are registered below).
SECTIONS: dict[str, type[ConfigSection]] = {}


def register_section(modality: str, section: type[ConfigSection]) -> None:
    """Make configs of `modality` read and check `section`'s fields."""
    clash = sorted({f.name for f in dataclasses.fields(section)} & set(CORE_FIELDS))
    if clash:
        raise ValueError(f"{section.__name__} names a core field of ExtractConfig: {clash[0]}")
    SECTIONS[modality] = section


@dataclass(frozen=True, init=False)
class ExtractConfig:
    """The settings that decide every stored vector (batch size, device, threads don't): a core
    every modality shares, and the modality's `section` (its own fields, featx.config.SECTIONS).

    Made from the flat fields too, ``ExtractConfig(model=..., weights_sha256=..., max_length=128)``:
    a field the core does not hold goes to the modality's section, which must declare it. A
    section's fields read as the config's own (``config.max_length``)."""

    model: str
    weights_sha256: str
    poolings: tuple[str, ...]
    layers: tuple[int, ...]
    normalize: bool
    dtype: str
    store_dtype: str
    modality: str
    # What ran the model, when not torch: a registered backend's name (featx.backbones.loaders:
    # "openvino", the model converted in-process and run in `dtype`'s precision). None: torch.
    backend: str | None
    section: ConfigSection

    def __init__(self, model: str, weights_sha256: str, poolings: tuple[str, ...] = ("mean",),
                 layers: tuple[int, ...] = (-1,), normalize: bool = False, dtype: str = "fp32",
                 store_dtype: str = "float32", modality: str = "text", backend: str | None = None,
                 section: ConfigSection | None = None, **section_fields: Any) -> None:
        core = dict(model=model, weights_sha256=weights_sha256, poolings=poolings, layers=layers, normalize=normalize,
                    dtype=dtype, store_dtype=store_dtype, modality=modality, backend=backend)
        for name, value in core.items():
            object.__setattr__(self, name, value)
        if modality not in SECTIONS:
            raise ParameterError("modality", f"{modality!r} is not registered: choose from {', '.join(SECTIONS)}")
        if section is None:
            section = _section_of(SECTIONS[modality], modality, section_fields)
        elif section_fields:
            raise ParameterError(next(iter(section_fields)), "is set both in section= and as a field: give it once")
        object.__setattr__(self, "section", section)
        self._check()

    def __getattr__(self, name: str) -> Any:
        section = self.__dict__.get("section")
        if section is not None and name in _field_names(type(section)):
            return getattr(section, name)
        raise AttributeError(f"an ExtractConfig of {self.__dict__.get('modality')} has no field {name!r}")

    def replace(self, **changes: Any) -> ExtractConfig:
        """This config with `changes` made, to core or section fields alike."""
        return type(self)(**{**self.fields(), **changes})

    def fields(self) -> dict[str, Any]:
        """Every field, the section's beside the core's (None: unset)."""
        core = {name: getattr(self, name) for name in CORE_FIELDS}
        return {**core, **{f.name: getattr(self.section, f.name) for f in dataclasses.fields(self.section)}}

    @property
    def sequences(self) -> str | None:
        """What the store's per-row sequences (dataset `states`) hold: "states" (token states),
        "windows" (window vectors) or None (nothing); the section decides."""
        return self.section.sequences

    @property
    def sequence_dtype(self) -> str:
        """The dtype of the per-row sequences."""
        return self.section.sequence_dtype

    def _check(self) -> None:
        if not self.poolings:
            raise ParameterError("pooling", "is empty: pass at least one of " + ", ".join(POOLINGS))
        unknown = [p for p in self.poolings if p not in POOLINGS]
        if unknown:
            raise ParameterError("pooling", f"{unknown[0]!r} is unknown: choose from {', '.join(POOLINGS)}")
        if len(set(self.poolings)) != len(self.poolings):
            raise ParameterError("pooling", f"lists a pooling twice: {','.join(self.poolings)}")
        if self.dtype not in (*DTYPES, *QUANTIZED_DTYPES):
            raise ParameterError("dtype", f"{self.dtype!r} is unknown: choose from {', '.join(DTYPES)}, int8")
        if self.store_dtype not in STORE_DTYPES:
            raise ParameterError("store_dtype",
                                 f"{self.store_dtype!r} is unknown: choose from {', '.join(STORE_DTYPES)}")
        if self.backend is not None and (not isinstance(self.backend, str) or self.backend in ("", "torch", "auto")):
            raise ParameterError("backend", f"{self.backend!r} is not recorded: torch is recorded as unset, and a "
                                            "config names the backend that ran (featx.backbones.loaders)")
        self.section.check(self)

    def _set_fields(self) -> dict[str, object]:
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in self.fields().items()}
        return {k: v for k, v in fields.items() if v is not None}

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, lists for tuples, unset (None) fields left out."""
        return json.dumps(self._set_fields(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ExtractConfig:
        """The config a store was written with."""
        fields = json.loads(text)
        for key in ("poolings", "layers"):
            fields[key] = tuple(fields[key])
        return cls(**fields)

    @property
    def vector_dtype(self) -> str:
        """The dtype vectors are computed and cached in before the store keeps them (float32 for a
        compact store, whose writer encodes them)."""
        return self.store_dtype if self.store_dtype in ("float32", "float16") else "float32"

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the vector-defining fields that are set."""
        fields = {k: v for k, v in self._set_fields().items() if k not in _NOT_FINGERPRINTED}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


CORE_FIELDS = tuple(f.name for f in dataclasses.fields(ExtractConfig) if f.name != "section")


def _field_names(section: type[ConfigSection]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(section))


def _section_of(section: type[ConfigSection], modality: str, fields: dict[str, Any]) -> ConfigSection:
    """`section` made from `fields`, a field it does not declare refused in one line."""
    unknown = sorted(set(fields) - _field_names(section))
    if unknown:
        known = ", ".join(sorted(_field_names(section))) or "none"
        raise ParameterError(unknown[0], f"is not a field of {modality} configs (its own fields: {known})")
    return section(**fields)


@dataclass(frozen=True)
class TextSection(ConfigSection):
    """Text's fields: the tokenizer files' sha256 and the token limit; texts over max_length (`long`:
    None cuts them, "chunk" embeds every window of max_length tokens, consecutive windows sharing
    `long_stride` tokens, and pools a row's windows with `long_pooling`); token states kept at
    hidden-state index `cache_layer` (0 = the embeddings) in `cache_dtype` for a blocks head
    (featx.heads.blocks); window vectors kept (`keep_windows`, never False: unset is the one
    spelling of "no") for a windows head; the `prompt` put before every text (`prompt_excluded`
    True: the pooling leaves its tokens out, as a model's Pooling with include_prompt false); and
    the sentence-transformers `modules` between the pooling and the final normalisation as
    canonical JSON with each weight file's sha256 (featx.backbones.st_modules); for dtype int8, the
    input's first `calibration_rows` rows quantization was calibrated on, and the sha256 of their hashes."""

    tokenizer_sha256: str | None = None
    max_length: int | None = None
    long: str | None = None
    long_stride: int | None = None
    long_pooling: str | None = None
    cache_layer: int | None = None
    cache_dtype: str | None = None
    keep_windows: bool | None = None
    prompt: str | None = None
    prompt_excluded: bool | None = None
    modules: str | None = None
    calibration_rows: int | None = None
    calibration_sha256: str | None = None

    @property
    def sequences(self) -> str | None:
        if self.cache_layer is not None:
            return "states"
        return "windows" if self.keep_windows else None

    @property
    def sequence_dtype(self) -> str:
        return self.cache_dtype or "float32"

    def check(self, config: ExtractConfig) -> None:
        self._check_kept()
        if (config.dtype == "int8") != (self.calibration_rows is not None) or \
                (self.calibration_rows is None) != (self.calibration_sha256 is None):
            raise ParameterError("calibration_rows", "and calibration_sha256 are set for dtype int8 only, together")
        if config.dtype == "int8" and config.backend != "openvino":
            raise ParameterError("dtype", "int8 runs on --backend openvino only (pip install 'featx[int8]')")
        if self.prompt is not None:
            if not isinstance(self.prompt, str) or not self.prompt:
                raise ParameterError("prompt", "is a non-empty text put before each text (texts only; unset for none)")
            if self.long is not None:
                raise ParameterError("prompt", "is not applied with --long chunk (only a text's first window would "
                                               "carry it)")
        if self.prompt_excluded is not None and (self.prompt_excluded is not True or self.prompt is None):
            raise ParameterError("prompt_excluded", "is set (true) with a prompt only")
        if self.modules is not None and config.layers != (-1,):
            raise ParameterError("layers", "must be the last (-1) for the model's own embedding, whose modules "
                                           "follow its last layer: pass --pooling to pool other layers")
        if self.tokenizer_sha256 is None or self.max_length is None:
            raise ParameterError("max_length", "and the tokenizer hash are needed for text")
        if "pooler" in config.poolings:
            raise ParameterError("pooling", "pooler applies to image models only")
        if self.max_length < 2:
            raise ParameterError("max_length",
                                 f"must be at least 2 (room for the special tokens), got {self.max_length}")
        if not config.layers:
            raise ParameterError("layers", "selects no layer")
        self._check_long()

    def _check_kept(self) -> None:
        if (self.cache_layer is None) != (self.cache_dtype is None):
            raise ParameterError("cache_layer", "and cache_dtype are set together or not at all")
        if self.cache_layer is not None:
            if self.long is not None:
                raise ParameterError("cache_layer", "keeps token states of texts cut to max_length only "
                                                    "(not with --long chunk)")
            if isinstance(self.cache_layer, bool) or not isinstance(self.cache_layer, int) or self.cache_layer < 0:
                raise ParameterError("cache_layer", f"must be a hidden-state index >= 0, got {self.cache_layer!r}")
            if self.cache_dtype not in STATE_DTYPES:
                raise ParameterError("cache_dtype", f"{self.cache_dtype!r} is unknown: choose from "
                                                    f"{', '.join(STATE_DTYPES)}")
        if self.keep_windows is not None and (self.keep_windows is not True or self.long != "chunk"):
            raise ParameterError("keep_windows", "keeps the window vectors of --long chunk: it is set (true) with "
                                                 "--long chunk only")

    def _check_long(self) -> None:
        max_length = int(self.max_length or 0)
        if self.long is None:
            if self.long_stride is not None or self.long_pooling is not None:
                raise ParameterError("long", "is not chunk: a stride or window pooling means nothing when cutting")
        elif self.long != "chunk":
            raise ParameterError("long", f"{self.long!r} is unknown: choose from {', '.join(LONG_MODES)}")
        elif self.long_pooling not in LONG_POOLINGS:
            raise ParameterError("long_pooling", f"{self.long_pooling!r} is unknown: choose from mean, max")
        elif self.long_stride is None or not 0 <= self.long_stride <= max_length // 2:
            raise ParameterError("stride", f"must be between 0 and half of max_length ({max_length // 2}), "
                                           f"got {self.long_stride}")


@dataclass(frozen=True)
class ImageSection(ConfigSection):
    """Image's fields: canonical JSON of the preprocessing (a transformers image processor's config,
    or a torch module's declared resize, crop, mean and std), and for a torch module given as the
    backbone (featx.module_backbone) sha256 of its printed structure: its weights hash is of the
    state dict, which holds no stride or activation, so two modules with the same weights differ here."""

    preprocess: str | None = None
    structure_sha256: str | None = None

    def check(self, config: ExtractConfig) -> None:
        if self.preprocess is None:
            raise ParameterError("preprocess", "is missing: an image config records its preprocessing")


# The built-in sections are here, beside the core, so any store reads without loading a backbone.
register_section("text", TextSection)
register_section("image", ImageSection)
