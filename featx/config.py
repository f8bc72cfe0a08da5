"""ExtractConfig: everything that changes a vector, and its fingerprint."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from featx.errors import ParameterError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
POOLINGS = ("mean", "cls", "max", "last", "weightedmean", "mean_sqrt_len", "pooler")
FINETUNE_POOLINGS = ("mean", "cls", "max", "last")  # pooler is a frozen model's own head: not fine-tuned
DTYPES = ("fp32", "bf16", "fp16")
STORE_DTYPES = ("float32", "float16")
LONG_MODES = ("truncate", "chunk")
LONG_POOLINGS = ("mean", "max")
STATE_DTYPES = ("float16", "float32")  # token states cached for a blocks head (--cache-layer)
COMPRESSIONS = ("lzf", "gzip")  # HDF5 filters a store's vectors may be written with (none when unset)
PROTOCOLS = ("full", "mteb")  # how featx train evaluates (featx.train, featx.mteb)
EXPORT_FORMATS = ("npy", "parquet")  # what `featx export` writes (featx.store.export)
# The stages of `featx bench`, in the order a suite runs them (featx.bench.runner).
BENCH_STAGES = ("extract", "heads", "mteb", "tfidf", "hybrid", "blocks", "finetune")
BACKENDS = ("torch", "openvino")  # what runs the model; torch is recorded as unset (older stores keep theirs)
# A new store's backend when none is asked for: OpenVINO where it is installed and applies, else
# torch. Measured faster on every CPU kind tried (benchmarks/README.md, "Which backend").
DEFAULT_BACKEND = "auto"
STATES = "states"  # their name: a featurizer's per-row sequence output, the store's dataset
# A featurizer's batch may carry this mask of a sequence output's real entries, when they are
# not the attention mask's (window vectors: rows x windows); runners read it, models never see it.
SEQUENCE_MASK = "sequence_mask"

# `model` names the backbone for people; the weights and tokenizer hashes identify
# it for the fingerprint, so the same weights found under another path or name
# still match an existing store.
_NOT_FINGERPRINTED = frozenset({"model"})
# The rule for fields added later: they default to None, and a field that is None is
# left out of the JSON and the fingerprint. A store written before the field existed
# therefore keeps its fingerprint, and so does every config that leaves it unset.


@dataclass(frozen=True)
class ExtractConfig:
    """The settings that decide every stored vector (batch size, device, threads don't)."""

    model: str
    weights_sha256: str
    # Text: the tokenizer files' sha256 and the token limit (None for images).
    tokenizer_sha256: str | None = None
    max_length: int | None = None
    poolings: tuple[str, ...] = ("mean",)
    layers: tuple[int, ...] = (-1,)
    normalize: bool = False
    dtype: str = "fp32"
    store_dtype: str = "float32"
    modality: str = "text"
    # Texts over max_length: None (unset) cuts them; "chunk" embeds every window of max_length
    # tokens, consecutive windows sharing `long_stride` tokens, and pools the windows of a row
    # with `long_pooling` (mean or max).
    long: str | None = None
    long_stride: int | None = None
    long_pooling: str | None = None
    # Images: canonical JSON of the preprocessing (a transformers image processor's config, or
    # a torch module's declared resize, crop, mean and std); None for text.
    preprocess: str | None = None
    # Text: also keep every row's token states at hidden-state index `cache_layer` (0 = the
    # embeddings, 1 = after the first block), in `cache_dtype`, for heads that train the blocks
    # above it (featx.heads.blocks); None: no token states.
    cache_layer: int | None = None
    cache_dtype: str | None = None
    # Text with --long chunk: also keep every row's window vectors (the first pooling of each
    # window, float32, before the windows are pooled) for heads that weigh the windows
    # (featx.heads.windows); None: not kept. Never False: unset is the one spelling of "no".
    keep_windows: bool | None = None
    # What ran the model, when not torch: "openvino" (featx[openvino]; the model converted
    # in-process, run in `dtype`'s precision; texts, and images from a torch module). None: torch.
    backend: str | None = None
    # Text: the prompt put before every text (a sentence-transformers model's, e.g. "query: ");
    # None: none. `prompt_excluded` True: the pooling leaves the prompt's tokens (and a leading
    # special token) out, as the model's Pooling declares with include_prompt false.
    prompt: str | None = None
    prompt_excluded: bool | None = None
    # Text, the model's own embedding: the sentence-transformers modules between its pooling
    # and the final L2 normalisation (Dense, LayerNorm, an inner Normalize) as canonical JSON,
    # each weight file's sha256 included (featx.backbones.st_modules); None: none.
    modules: str | None = None
    # Images from a torch module given as the backbone (featx.module_backbone): sha256 of the
    # module's printed structure. Its weights hash is of the state dict, which holds no stride
    # or activation, so two modules with the same weights differ here; None: not such a module.
    structure_sha256: str | None = None

    @property
    def sequences(self) -> str | None:
        """What the store's per-row sequences (dataset `states`) hold: "states" (token states at
        cache_layer), "windows" (window vectors) or None (nothing)."""
        if self.cache_layer is not None:
            return "states"
        return "windows" if self.keep_windows else None

    @property
    def sequence_dtype(self) -> str:
        """The dtype of the per-row sequences: cache_dtype for token states, float32 for windows."""
        return self.cache_dtype or "float32"

    def __post_init__(self) -> None:
        if not self.poolings:
            raise ParameterError("pooling", "is empty: pass at least one of " + ", ".join(POOLINGS))
        unknown = [p for p in self.poolings if p not in POOLINGS]
        if unknown:
            raise ParameterError("pooling", f"{unknown[0]!r} is unknown: choose from {', '.join(POOLINGS)}")
        if len(set(self.poolings)) != len(self.poolings):
            raise ParameterError("pooling", f"lists a pooling twice: {','.join(self.poolings)}")
        if self.dtype not in DTYPES:
            raise ParameterError("dtype", f"{self.dtype!r} is unknown: choose from {', '.join(DTYPES)}")
        if self.store_dtype not in STORE_DTYPES:
            raise ParameterError("store_dtype",
                                 f"{self.store_dtype!r} is unknown: choose from {', '.join(STORE_DTYPES)}")
        if self.modality not in MODALITY_RULES:
            raise ParameterError("modality", f"{self.modality!r} is not registered: choose from "
                                             f"{', '.join(MODALITY_RULES)}")
        if self.backend is not None and self.backend not in BACKENDS[1:]:
            raise ParameterError("backend", f"{self.backend!r} is unknown or the default (recorded as unset): "
                                            f"choose from {', '.join(BACKENDS[1:])}")
        if self.backend is not None and self.dtype not in ("fp32", "bf16"):
            raise ParameterError("backend", f"{self.backend} runs in fp32 or bf16, not {self.dtype}")
        if self.modality != "text":
            given = [name for name in TEXT_FIELDS if getattr(self, name) is not None]
            if given:
                raise ParameterError(given[0], f"applies to texts only, not to {self.modality}")
        MODALITY_RULES[self.modality](self)

    def _set_fields(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

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
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the vector-defining fields that are set."""
        fields = {k: v for k, v in self._set_fields().items() if k not in _NOT_FINGERPRINTED}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def image_rules(config: ExtractConfig) -> None:
    if config.preprocess is None:
        raise ParameterError("preprocess", "is missing: an image config records its preprocessing")
    if config.backend is not None and json.loads(config.preprocess).get("kind") != "featx":
        raise ParameterError("backend", "openvino runs image models given as torch modules (efficientnet-lite0, "
                                        "featx.module_backbone), not transformers vision models")


def text_rules(config: ExtractConfig) -> None:
    if (config.cache_layer is None) != (config.cache_dtype is None):
        raise ParameterError("cache_layer", "and cache_dtype are set together or not at all")
    if config.cache_layer is not None:
        if config.long is not None:
            raise ParameterError("cache_layer", "keeps token states of texts cut to max_length only "
                                                "(not with --long chunk)")
        if isinstance(config.cache_layer, bool) or not isinstance(config.cache_layer, int) or config.cache_layer < 0:
            raise ParameterError("cache_layer", f"must be a hidden-state index >= 0, got {config.cache_layer!r}")
        if config.cache_dtype not in STATE_DTYPES:
            raise ParameterError("cache_dtype", f"{config.cache_dtype!r} is unknown: choose from "
                                                f"{', '.join(STATE_DTYPES)}")
    if config.keep_windows is not None and (config.keep_windows is not True or config.long != "chunk"):
        raise ParameterError("keep_windows", "keeps the window vectors of --long chunk: it is set (true) with "
                                             "--long chunk only")
    if config.backend is not None and config.cache_layer is not None:
        raise ParameterError("backend", "openvino runs text models without --cache-layer")
    if config.prompt is not None:
        if not isinstance(config.prompt, str) or not config.prompt:
            raise ParameterError("prompt", "is a non-empty text put before each text (texts only; unset for none)")
        if config.long is not None:
            raise ParameterError("prompt", "is not applied with --long chunk (only a text's first window would "
                                           "carry it)")
    if config.prompt_excluded is not None and (config.prompt_excluded is not True or config.prompt is None):
        raise ParameterError("prompt_excluded", "is set (true) with a prompt only")
    if config.modules is not None and config.layers != (-1,):
        raise ParameterError("layers", "must be the last (-1) for the model's own embedding, whose modules "
                                       "follow its last layer: pass --pooling to pool other layers")
    if config.tokenizer_sha256 is None or config.max_length is None:
        raise ParameterError("max_length", "and the tokenizer hash are needed for text")
    if config.preprocess is not None:
        raise ParameterError("preprocess", "applies to images only")
    if "pooler" in config.poolings:
        raise ParameterError("pooling", "pooler applies to image models only")
    if config.max_length < 2:
        raise ParameterError("max_length",
                             f"must be at least 2 (room for the special tokens), got {config.max_length}")
    if not config.layers:
        raise ParameterError("layers", "selects no layer")
    if config.long is None:
        if config.long_stride is not None or config.long_pooling is not None:
            raise ParameterError("long", "is not chunk: a stride or window pooling means nothing when cutting")
    elif config.long != "chunk":
        raise ParameterError("long", f"{config.long!r} is unknown: choose from {', '.join(LONG_MODES)}")
    elif config.long_pooling not in LONG_POOLINGS:
        raise ParameterError("long_pooling", f"{config.long_pooling!r} is unknown: choose from mean, max")
    elif config.long_stride is None or not 0 <= config.long_stride <= config.max_length // 2:
        raise ParameterError("stride", f"must be between 0 and half of max_length ({config.max_length // 2}), "
                                       f"got {config.long_stride}")


# The rules each modality sets for the fields it uses, run after the shared ones. Text's and
# image's are here, beside their fields, so any store reads without loading the modality
# registry; a modality registered later adds its own (featx.modalities.register_modality).
MODALITY_RULES: dict[str, Callable[[ExtractConfig], None]] = {"text": text_rules, "image": image_rules}
# Fields only texts set (their rules are text_rules): unset for every other modality.
TEXT_FIELDS = ("tokenizer_sha256", "max_length", "long", "long_stride", "long_pooling", "cache_layer",
               "cache_dtype", "keep_windows", "prompt", "prompt_excluded", "modules")


def parse_layers(spec: str | int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Layer indices from `-1`, `-4:` (the last four, concatenated) or `-4,-1`.

    Indices count into the model's hidden states, where 0 is the embedding output
    and -1 the last block; negative indices are kept negative so the config reads
    the same for any depth.
    """
    if isinstance(spec, int):
        return (spec,)
    if isinstance(spec, (tuple, list)):
        return tuple(int(i) for i in spec)
    text = str(spec).strip()
    try:
        if ":" in text:
            start_text, _, stop_text = text.partition(":")
            start = int(start_text)
            stop = int(stop_text) if stop_text else 0
            if start >= 0 or stop > 0:
                raise ValueError
            layers = tuple(range(start, stop))
        else:
            layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ParameterError(
            "layers", f"{spec!r} cannot be read: use -1 (last), -4: (last four, concatenated) or a list like -4,-1"
        ) from None
    if not layers:
        raise ParameterError("layers", f"{spec!r} selects no layer")
    return layers
