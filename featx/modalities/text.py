"""Texts as a modality: files and bundled datasets of texts, transformers text models (torch
or OpenVINO), and `make_config`, which resolves a text extraction's settings into its
ExtractConfig (the model's own embedding by default, featx.backbones.st_modules)."""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from featx.backbones import DEFAULT_MODEL, Backbone, load_backbone
from featx.backbones.int8 import calibration_sha256
from featx.backbones.loaders import resolve_backend
from featx.backbones.st_modules import embedding_fields
from featx.config import DEFAULT_BACKEND, LONG_MODES, LONG_POOLINGS, STATE_DTYPES, ExtractConfig, TextSection
from featx.constraints import Options
from featx.data import Record, Source, open_input
from featx.data.memory import HF_PREFIX, open_hf
from featx.data.targets import TARGET_CHOICES
from featx.errors import FeatxError, ParameterError
from featx.featurizers import Featurizer, TextFeaturizer
from featx.featurizers.text import tokenize, tokenize_windows
from featx.hardware import resolve_dtype
from featx.modalities.base import Modality, given_choices, register_modality
from featx.options import ExtractOptions, parse_layers

DEFAULT_WINDOW_ROWS = 4096


class TextModality(Modality):
    """Texts (the fallback: any input no other modality claims)."""

    name = "text"
    default_window_rows = DEFAULT_WINDOW_ROWS
    default_model = DEFAULT_MODEL
    row_flags: ClassVar[Mapping[str, str]] = {"truncated": "the text was cut to max_length"}
    section = TextSection
    uses = frozenset({"max_length", "long", "stride", "long_pooling", "prompt", "prompt_name", "cache_layer",
                      "cache_dtype", "keep_windows"})
    # featx frontier: the frozen backbones it measures, cheapest first (name, model, work per row against
    # the first: mpnet is 12 layers of 768 against 6 of 384, 8x the multiply-adds), and the top-2
    # fine-tune's recipe (the rate the committed frontier measured for the top two blocks).
    frontier_backbones = (("MiniLM", DEFAULT_MODEL, 1.0), ("mpnet", "all-mpnet-base-v2", 8.0))
    frontier_finetune = (("train_layers", 2), ("lr", 1e-4))

    def finetune(self, train: Any, out: Any, **kwargs: Any) -> Any:
        from featx.finetune.texts import finetune_texts  # when used: it imports scikit-learn (1 s)

        return finetune_texts(train, out, **kwargs)

    def load_finetuned(self, folder: Any, device: Any = "auto") -> Any:
        from featx.finetune.texts import FinetunedPredictor

        return FinetunedPredictor(folder, device=device)

    def claims(self, input: str | Path, choices: dict[str, Any]) -> bool:
        return True

    def open(self, input: str | Path, **choices: Any) -> Source:
        if "image_column" in choices:
            raise ParameterError("image_column", f"applies to images; {input} is read as texts")
        if str(input).startswith(HF_PREFIX):
            read = ("text_column", "label_column", "id_column", *TARGET_CHOICES)
            unread = [name for name in given_choices(choices) if name not in read]
            if unread:
                raise ParameterError(unread[0], f"does not apply to {input}: a Dataset has named columns")
            return open_hf(str(input), **{name: choices[name] for name in read if choices.get(name) is not None})
        return open_input(input, **choices)

    def takes(self, item: Any) -> bool:
        return isinstance(item, str)

    def records(self, inputs: Sequence[str]) -> list[Record]:
        if not all(isinstance(text, str) for text in inputs):
            raise ParameterError("inputs", "must be texts (str) for a text model")
        return [Record(i, text, -1) for i, text in enumerate(inputs)]

    def extraction(self, source: Source, model: Any, options: ExtractOptions) -> tuple[Featurizer, int, int | None]:
        if model is not None and not isinstance(model, (str, Path, Backbone)):
            raise FeatxError(f"{getattr(model, 'name', model)} is not a text model; {source.name} is read as texts")
        backbone = model if isinstance(model, Backbone) else load_backbone(
            str(model or DEFAULT_MODEL), device=options.model.device, trust_remote_code=options.model.trust_remote_code)
        calibration = _calibration_texts(source, options.model.calibration_rows) \
            if options.model.dtype == "int8" else None
        config = make_config(backbone, options, calibration=calibration)
        fidelity = None
        if calibration is not None:  # quantized (or found in the cache) before anything is written
            from featx.backbones.int8 import quantize

            fidelity = quantize(backbone, config, _calibration_ids(backbone, config, calibration),
                                options.model.allow_low_fidelity).to_dict()
        featurizer = TextFeaturizer(backbone, config)
        featurizer.fidelity = fidelity
        state_dim = None
        if config.sequences is not None:
            state_dim = backbone.hidden_size if config.sequences == "states" else featurizer.dim
            # A vector cache holds no sequences; merging does not join them yet.
            flag = "--cache-layer" if config.sequences == "states" else "--keep-windows"
            for name in ("cache_dir", "shard"):
                if getattr(options.run, name) is not None:
                    raise ParameterError(name, f"cannot be combined with {flag}")
        return featurizer, DEFAULT_WINDOW_ROWS, state_dim

    def featurizer_for(self, config: ExtractConfig, *, device: Any = "auto", backbone: Any = None,
                       states_only: bool = False) -> Featurizer:
        text = backbone if isinstance(backbone, Backbone) else load_backbone(config.model, device=device)
        if (text.weights_sha256, text.tokenizer_sha256) != (config.weights_sha256, config.tokenizer_sha256):
            raise FeatxError(f"the model found at {config.model} is not the one this head was trained on "
                             "(weights or tokenizer differ)")
        return TextFeaturizer(text, config, states_only=states_only)


def make_config(backbone: Backbone, options: ExtractOptions | None = None, *,
                calibration: Sequence[str] | None = None, **fields: Any) -> ExtractConfig:
    """The ExtractConfig for `backbone` with `auto` and defaults resolved to concrete values.

    The settings are featx.extract's options (featx.options): `options` as one ExtractOptions, or
    its fields as keywords (``make_config(backbone, pooling="mean", max_length=128, dtype="fp32")``).
    `pooling=None` and `normalize=None` mean the model's own sentence embedding where its
    folder declares one (sentence-transformers: all-MiniLM-L6-v2 is mean pooling, then
    L2-normalised; Dense and LayerNorm modules too, featx.backbones.st_modules), else mean
    pooling without normalisation. `prompt`, `prompt_name`: see `extract`. `long="chunk"` embeds texts
    over max_length as windows of max_length tokens overlapping by `stride` (default
    min(32, max_length / 4)) and pools each row's windows with `long_pooling`.
    `cache_layer=L` also keeps each row's token states at hidden-state index L (negative counts
    from the top: -2 is below the last two blocks) in `cache_dtype` (default float16), for a blocks head.
    `keep_windows=True` (long="chunk" only) also keeps each row's window vectors, for a windows head.
    `backend`: a registered backend (torch; openvino on the CPU, in fp32 or bf16) or auto (None: auto;
    featx.backbones.loaders picks the first that applies). dtype int8 (OpenVINO) needs the texts of
    the input's first rows it is calibrated on, as `calibration` (featx.backbones.int8).
    """
    chosen = options if options is not None else ExtractOptions.build(**fields)
    if options is not None and fields:
        raise ParameterError(next(iter(fields)), "is set beside options=: give the settings one way")
    vectors, kept = chosen.vectors, chosen.store
    embedding = embedding_fields(backbone.name, backbone.declared, vectors.pooling, vectors.normalize, vectors.prompt,
                                 vectors.prompt_name)
    layer_indices = parse_layers(vectors.layers if isinstance(vectors.layers, str) else tuple(vectors.layers))
    for index in layer_indices:
        if not -backbone.num_hidden_states <= index < backbone.num_hidden_states:
            raise ParameterError("layers", f"{index} does not exist: {backbone.name} has hidden states "
                                           f"{-backbone.num_hidden_states}..{backbone.num_hidden_states - 1}")
    max_length = _max_length(backbone, vectors.max_length)
    states: dict[str, Any] = {}
    if kept.cache_layer is not None:
        states = {"cache_layer": state_layer(backbone, kept.cache_layer, vectors.long),
                  "cache_dtype": Options(STATE_DTYPES).check("cache_dtype", kept.cache_dtype or "float16")}
    elif kept.cache_dtype is not None:
        raise ParameterError("cache_dtype", "applies to --cache-layer only")
    # A static model is a table lookup: nothing to compute in bf16, so auto records what runs (fp32).
    compute = "fp32" if backbone.static and chosen.model.dtype == "auto" else chosen.model.dtype \
        if chosen.model.dtype == "int8" else resolve_dtype(chosen.model.dtype, backbone.device)
    if (compute == "int8") != (calibration is not None):
        raise ParameterError("dtype", "int8 is calibrated on the first rows of the input featx extract reads" if
                             calibration is None else "is not int8: there is nothing to calibrate")
    return ExtractConfig(
        **_chunking(backbone, max_length, vectors, kept.keep_windows),
        **states,
        backend=resolve_backend(chosen.model.backend or DEFAULT_BACKEND, backbone, compute, kept.cache_layer),
        model=backbone.name,
        weights_sha256=backbone.weights_sha256,
        tokenizer_sha256=backbone.tokenizer_sha256,
        max_length=max_length,
        layers=layer_indices,
        **embedding,
        dtype=compute,
        store_dtype=kept.store_dtype,
        **_calibration_fields(calibration),
    )


def _calibration_fields(calibration: Sequence[str] | None) -> dict[str, Any]:
    """The config fields of int8's calibration rows: how many, and the sha256 of their hashes."""
    return {} if calibration is None else {"calibration_rows": len(calibration),
                                           "calibration_sha256": calibration_sha256(calibration)}


def _calibration_texts(source: Source, rows: int) -> list[str]:
    """The texts of the input's first `rows` rows (whatever shard this run embeds)."""
    if not hasattr(source, "first_texts"):  # featx.encode's inputs: no input of a store to calibrate on
        raise ParameterError("dtype", "int8 is calibrated on the first rows of the input featx extract reads: "
                                      "extract a store, then encode with featx.Encoder.for_config(store.config)")
    texts: list[str] = source.first_texts(rows)
    return texts


def _calibration_ids(backbone: Backbone, config: ExtractConfig, texts: list[str]) -> list[list[int]]:
    """The calibration rows' token ids as they are embedded: the prompt before each text, cut to
    max_length, or every window of a long text (--long chunk)."""
    texts = [(config.prompt or "") + text for text in texts]
    if config.long == "chunk":
        return [ids for windows in tokenize_windows(backbone.tokenizer, texts, int(config.max_length),
                                                    int(config.long_stride or 0)) for ids in windows]
    return tokenize(backbone.tokenizer, texts, int(config.max_length))


def _max_length(backbone: Backbone, max_length: Any) -> int:
    """The token limit asked for, checked against the model's room; the model's default when None."""
    specials = backbone.tokenizer.num_special_tokens_to_add(pair=False)
    if max_length is None:
        return int(backbone.default_max_length)
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < specials + 1:
        raise ParameterError("max_length", f"must be at least {specials + 1} ({specials} special tokens and one "
                                           f"token of text), got {max_length!r}")
    if backbone.max_positions is not None and int(max_length) > backbone.max_positions:
        raise ParameterError("max_length", f"{max_length} is more than {backbone.name} can take: its position "
                                           f"embeddings stop at {backbone.max_positions} tokens")
    return int(max_length)


def _chunking(backbone: Backbone, max_length: int, vectors: Any, keep_windows: bool) -> dict[str, Any]:
    """The config fields of `vectors.long` (truncate: none; chunk: stride, window pooling, kept windows)."""
    long, stride = Options(LONG_MODES).check("long", vectors.long), vectors.stride
    if long == "truncate":
        if stride is not None:
            raise ParameterError("stride", "applies to --long chunk only")
        if keep_windows:
            raise ParameterError("keep_windows", "keeps the window vectors of long texts: it needs --long chunk")
        return {}
    text_tokens = max_length - backbone.tokenizer.num_special_tokens_to_add(pair=False)  # a window's room for text
    # At most half a window (ExtractConfig's rule), and fewer than its text tokens, or no window moves on.
    most = min(max_length // 2, text_tokens - 1)
    stride = min(32, max_length // 4, most) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or not 0 <= int(stride) <= most:
        raise ParameterError("stride", f"must be at least 0 and at most {most} (half of --max-length "
                                       f"{max_length}, and less than the {text_tokens} tokens of text a window "
                                       f"holds), got {stride!r}")
    return {"long": "chunk", "long_stride": int(stride),
            "long_pooling": Options(LONG_POOLINGS).check("long_pooling", vectors.long_pooling),
            "keep_windows": True if keep_windows else None}


def state_layer(backbone: Backbone, layer: int, long: str = "truncate") -> int:
    """The hidden-state index (>= 0) whose token states --cache-layer keeps: at least one block must
    lie above it, and featx must be able to run those blocks alone (checked on the model itself)."""
    blocks = backbone.num_hidden_states - 1
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not -blocks <= layer < blocks:
        raise ParameterError("cache_layer", f"must leave at least one of {backbone.name}'s {blocks} blocks above it: "
                                            f"0..{blocks - 1} (or -{blocks}..-1 from the top), got {layer!r}")
    if long != "truncate":
        raise ParameterError("cache_layer", "keeps the token states of whole rows: it cannot be combined with "
                                            "--long chunk")
    from featx.heads.blocks_model import check_runs_alone  # the head's model, checked on this one

    index = int(layer) % blocks
    check_runs_alone(backbone, index)
    return index


register_modality(TextModality())
