"""featx.extract's options, in five groups: how the input is read, which model runs and how,
what vectors it gives, what the store keeps, and how the run goes.

    featx.extract("sst2:train", "train.h5",
                  model=featx.ModelOptions("all-MiniLM-L6-v2", dtype="fp32"),
                  vectors=featx.VectorOptions(pooling=("mean", "cls"), max_length=128),
                  run=featx.RunOptions(window_rows=2048, progress=False))

A group may also be given as a dict of its fields, `model` as the model alone (a name, a folder,
a module), and any field as a keyword of its own name (``pooling="mean"``): the keyword fills
that field of its group, so ``extract(x, out, pooling="mean")`` is
``extract(x, out, vectors=VectorOptions(pooling="mean"))``. A field set both ways, or a keyword
no group has, is refused in one line. Field names are unique across the groups.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from featx.config import (
    COMPRESSIONS,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_MODEL,
    DTYPES,
    LONG_MODES,
    LONG_POOLINGS,
    POOLINGS,
    QUANTIZED_DTYPES,
    STATE_DTYPES,
    STORE_DTYPES,
)
from featx.constraints import COUNT, NON_NEGATIVE, Interval, Options
from featx.errors import ParameterError

G = TypeVar("G")


def option(default: Any, help: str, constraint: Any = None, **cli: Any) -> Any:
    """A group field with what `featx extract` makes of it (featx.cli.options.field_option): its
    help line, the constraint that types its flag, and `cli` hints (negatable: --x/--no-x; folder:
    a folder path). A field without help has no flag of its own."""
    return field(default=default, metadata={"help": help, "constraint": constraint, **cli})


class _Group:
    """A group of options: made from None (its defaults), a dict of its fields, or itself."""

    @classmethod
    def of(cls: type[G], value: Any, group: str) -> G:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
            unknown = sorted(set(value) - known)
            if unknown:
                raise ParameterError(group, f"has no option {unknown[0]!r}: choose from {', '.join(sorted(known))}")
            return cls(**value)
        raise ParameterError(group, f"must be a {cls.__name__} or a dict of its fields, not {type(value).__name__}")

    def changed(self) -> list[str]:
        """The fields set to something other than their default, in field order."""
        return [f.name for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) != f.default]


@dataclass(frozen=True)
class ReadOptions(_Group):
    """How a path is read: the columns holding the text, label and id (None: found by name), and
    `skip_bad`, which keeps unreadable images as flagged rows instead of stopping (images only).

    Targets other than one class a row (featx.data.targets): `multi_label` (the separator of a
    label cell's labels), `label_columns` (several 0/1 columns), `target` (one or more number
    columns: regression), `allow_empty_labels` (a multi-label row may have none), and
    `label_names` (a file of one class name a line, or the names: label i's name, every class).
    `where` ("COL=VALUE", files only): read only the rows whose COL holds VALUE."""

    text_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    skip_bad: bool = option(False, "Images: skip an undecodable image (counted in the store, NaN vectors, left out "
                                   "by heads) instead of stopping.")
    multi_label: str | None = None
    label_columns: Sequence[str] | str | None = None
    target: Sequence[str] | str | None = None
    allow_empty_labels: bool = False
    label_names: str | Path | Sequence[str] | None = None
    where: str | None = None

    def targets(self) -> dict[str, Any]:
        """The target options that are set, as reading choices (featx.data.open_input's keywords)."""
        return {name: value for name in TARGET_CHOICES if (value := getattr(self, name)) not in (None, False)}


@dataclass(frozen=True)
class ModelOptions(_Group):
    """Which backbone runs and how: `model` (a name, a folder, a loaded backbone; None: the
    modality's default), the compute `dtype` (auto, fp32, bf16, fp16; int8: quantized ahead of the
    run, featx.backbones.int8, on the input's first `calibration_rows` rows, refused below its
    fidelity floor unless `allow_low_fidelity`), the `device`, the `backend` (torch, openvino, auto;
    None: the backend of the store being resumed, else auto), and whether a hub model's own code may run."""

    model: Any = option(None, f"Packaged short name, local transformers folder, or hub id (when online) [default: "
                              f"{DEFAULT_MODEL} for texts, {DEFAULT_IMAGE_MODEL} for images].")
    dtype: str = option("auto", "Compute dtype; auto = bf16 where the hardware has fast bf16, else fp32; int8: "
                                "statically quantized (texts, --backend openvino; pip install 'featx[int8]').",
                        Options(("auto", *DTYPES, *QUANTIZED_DTYPES)))
    calibration_rows: int = option(300, "--dtype int8: the input's first N rows calibrate the quantization.", COUNT)
    allow_low_fidelity: bool = option(False, "--dtype int8: keep a model whose mean cosine to fp32 on the "
                                             "calibration rows is under 0.99.")
    device: str = option("auto", "auto, cpu, cuda or cuda:K.")
    backend: str | None = option(None, "What runs the model: torch, openvino on the CPU (pip install "
                                       "'featx[openvino]'; text models, and image models given as torch modules) or "
                                       "another registered backend; auto: openvino where it is installed and applies "
                                       "[default: the backend of the store at -o when continuing it, else auto].")
    trust_remote_code: bool = option(False, "Allow a hub model's own Python code to run.")


@dataclass(frozen=True)
class VectorOptions(_Group):
    """Which vectors the backbone's outputs become: poolings (None: the model's own embedding),
    hidden-state `layers`, `normalize`, and for texts `max_length`, what to do with longer texts
    (`long`: truncate or chunk, with `stride` and `long_pooling`) and the `prompt` put before each."""

    pooling: Sequence[str] | str | None = option(
        None, f"Comma list of {', '.join(POOLINGS)} [default: the model's own; mean for MiniLM and EfficientNet-Lite0, "
              "cls for ViT-like image models]; pooler: image models only.")
    layers: str | Sequence[int] = option("-1", "Hidden states to pool: -1 (last), -4: (last four, concatenated), or "
                                               "a list -4,-1.")
    normalize: bool | None = option(None, "L2-normalise every stored vector [default: as the model does; yes for "
                                          "MiniLM].", negatable=True)
    max_length: int | None = option(None, "Token limit per row [default: the model's, 256 for MiniLM].", COUNT)
    long: str = option("truncate", "Rows over --max-length: truncate (counted in the store), or chunk: embed every "
                                   "window of --max-length tokens and pool a row's windows.", Options(LONG_MODES))
    stride: int | None = option(None, "chunk: tokens consecutive windows share [default: min(32, max-length/4)].",
                                NON_NEGATIVE)
    long_pooling: str = option("mean", "chunk: how a row's window vectors become one.", Options(LONG_POOLINGS))
    prompt: str | None = option(None, "Text put before every text, as sentence-transformers' prompt= does (\"\" for "
                                      "none) [default: the model's default_prompt_name, if it declares one].")
    prompt_name: str | None = option(None, "One of the prompts the model declares (config_sentence_transformers.json), "
                                           "e.g. query.")


@dataclass(frozen=True)
class StoreOptions(_Group):
    """What the store keeps and how: the vectors' `store_dtype`, HDF5 `compression`, whether to
    replace a store made differently (`overwrite`), the `store_format` written (a
    featx.store.format.StoreFormat; None: HDF5), and per-row sequences beside the vectors:
    token states at hidden-state index `cache_layer` (in `cache_dtype`, None: float16; texts) for a blocks head,
    or each long text's window vectors (`keep_windows`) for a windows head."""

    store_dtype: str = option("float32", "How the vectors are stored.", Options(STORE_DTYPES))
    compression: str | None = option(None, "HDF5 compression.", Options(COMPRESSIONS))
    overwrite: bool = option(False, "Replace an existing store made differently.")
    store_format: Any = None
    cache_layer: int | None = option(
        None, "Also keep every row's token states at this hidden-state index (0 = embeddings; -2 = below the last two "
              "blocks), for a blocks head that trains the blocks above it. Costs tokens x hidden x 2 bytes: about "
              "0.7 GB for SST-2's 67,349 phrases with MiniLM.", Interval(int))
    cache_dtype: str | None = option(None, "--cache-layer: how the token states are stored [default: float16].",
                                     Options(STATE_DTYPES))
    keep_windows: bool = option(False, "chunk: also keep every row's window vectors (float32), for a windows head "
                                       "that learns how much each window counts.")

    def __post_init__(self) -> None:
        if self.compression is not None:
            Options(COMPRESSIONS).check("compression", self.compression)


@dataclass(frozen=True)
class RunOptions(_Group):
    """How the run goes: the batch budget (`batch_tokens`: tokens, or images), the rows committed
    at a time (`window_rows`; None: the modality's default), one `shard` (i, n) of the input, a
    progress bar (None: on a terminal), and a `cache_dir` of vectors embedded before."""

    batch_tokens: int | None = option(
        None, "Budget per batch: tokens for texts (rows x padded length) [default: 2048 on CPU, 1024 with OpenVINO, "
              "16384 on GPU], images for images [default: 32 on CPU, 256 on GPU].", COUNT)
    window_rows: int | None = option(None, "Rows per commit window; a crash loses at most one window [default: 4096; "
                                           "for shards of a smaller input, rows / shards].", COUNT)
    shard: tuple[int, int] | None = None
    progress: bool | None = None
    cache_dir: str | Path | None = option(None, "Reuse vectors of texts embedded before with the same settings "
                                                "(keyed by content sha256); new vectors are added to it.", folder=True)

    def __post_init__(self) -> None:
        for name in ("batch_tokens", "window_rows"):
            if getattr(self, name) is not None:
                COUNT.check(name, getattr(self, name))


# The reading choices that say what the labels are (featx.data.targets reads them).
TARGET_CHOICES = ("multi_label", "label_columns", "target", "allow_empty_labels", "label_names")
GROUPS: dict[str, Any] = {"read": ReadOptions, "model": ModelOptions, "vectors": VectorOptions,
                                   "store": StoreOptions, "run": RunOptions}
# Each field's group: a keyword named after a field fills it.
FIELD_GROUP = {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}
# The options of the groups that every modality takes (a modality declares the others it reads, as
# Modality.uses): the model's, the run's, the reading choices (each Source refuses those it does not
# read), the poolings, layers and normalisation, and how the store is written.
CORE_OPTIONS = frozenset({*[f.name for g in (ModelOptions, RunOptions, ReadOptions) for f in dataclasses.fields(g)],
                          "pooling", "layers", "normalize", "store_dtype", "compression", "overwrite",
                          "store_format"}) - {"skip_bad"}
# The options that decide vectors (what featx.encode takes): the model's but the model itself, and the vectors'.
VECTOR_OPTIONS = (*[f.name for f in dataclasses.fields(ModelOptions) if f.name != "model"],
                  *[f.name for f in dataclasses.fields(VectorOptions)])


@dataclass(frozen=True)
class ExtractOptions:
    """Every option of one extraction, grouped, with the `output` it writes (None: in memory):
    what a modality's `extraction` sees. `modality`: the keywords that no group has and a
    registered modality declares as its own options (Modality.options), by name."""

    read: ReadOptions = field(default_factory=ReadOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    vectors: VectorOptions = field(default_factory=VectorOptions)
    store: StoreOptions = field(default_factory=StoreOptions)
    run: RunOptions = field(default_factory=RunOptions)
    output: Path | None = None
    modality: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, output: str | Path | None = None, *, read: Any = None, model: Any = None, vectors: Any = None,
              store: Any = None, run: Any = None, declared: Collection[str] = (), **fields: Any) -> ExtractOptions:
        """The groups from their usual forms (see the module), each keyword in `fields` put into
        its group, or among `modality` when a registered modality `declared` it; a field given twice
        or a keyword neither has is one line."""
        given = {"read": read, "vectors": vectors, "store": store, "run": run,
                 "model": model if model is None or isinstance(model, (ModelOptions, dict)) else {"model": model}}
        groups = {name: GROUPS[name].of(value, name) for name, value in given.items()}
        by_group: dict[str, dict[str, Any]] = {}
        own: dict[str, Any] = {}
        for name, value in fields.items():
            if name in declared:
                own[name] = value
                continue
            if name not in FIELD_GROUP:
                close = difflib.get_close_matches(name, [*FIELD_GROUP, *declared], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ParameterError(name, f"is not an option of featx.extract{hint}")
            group = FIELD_GROUP[name]
            if name in groups[group].changed():
                raise ParameterError(name, f"is set both in {group}= and as a keyword: give it once")
            by_group.setdefault(group, {})[name] = value
        for group, values in by_group.items():
            groups[group] = dataclasses.replace(groups[group], **values)
        return cls(**groups, output=None if output is None else Path(output), modality=own)

    def changed(self) -> list[str]:
        """The fields, across every group, set to something other than their default."""
        return [name for group in GROUPS for name in getattr(self, group).changed()]


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
        raise ParameterError("layers", f"{spec!r} cannot be read: use -1 (last), -4: (last four, "
                                       "concatenated) or a list like -4,-1") from None
    if not layers:
        raise ParameterError("layers", f"{spec!r} selects no layer")
    return layers
