"""The model's own sentence embedding, as a sentence-transformers folder declares it.

`modules.json` lists the pipeline sentence-transformers' `encode` runs: the transformer,
then a Pooling module, then any of Dense (a linear map and an activation), LayerNorm and
Normalize, in order. featx reproduces exactly these:

- Pooling: one mode among cls, mean, max, lasttoken, weightedmean and
  mean_sqrt_len_tokens, with ``include_prompt`` (False: a prompt's tokens, and the
  leading special token, are left out of the pooling);
- Dense: ``nn.Linear`` and a parameter-free ``torch.nn`` activation (Identity, Tanh, ReLU,
  GELU, Sigmoid, SiLU), with or without its residual connection;
- LayerNorm (``nn.LayerNorm``, eps 1e-5) and Normalize (L2).

Module weights load from ``model.safetensors`` only (a pickle can run code when read). A
module's type is read by its full name: only sentence-transformers' own classes (their
``sentence_transformers.models.*`` names, the legacy ``models.<Kind>.<Kind>`` spelling and the
module paths of sentence-transformers 5) are applied; ``mypkg.modules.Dense`` is another class,
whatever its last name. Every module's weights are read when the folder is, and their shapes
checked against its config, and its config against the width coming in, so a misfit is one
line before anything is embedded.
Anything else (another module type, several pooling modes concatenated, lower-casing the
input, an activation featx does not know, weights that cannot be read or do not fit) makes
`refusal` say so in one line, and the
default extraction refuses the folder before anything is embedded: featx never stores a
vector that silently differs from `encode`. Prompts come from
``config_sentence_transformers.json`` (``prompts``, ``default_prompt_name``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featx.backbones.hashing import files_sha256
from featx.backbones.st_layers import ACTIVATIONS
from featx.errors import FeatxError, first_line

# sentence-transformers' pooling modes (new names and the legacy pooling_mode_* keys) -> featx's pooling.
ST_POOLINGS = {"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last", "weightedmean": "weightedmean",
               "mean_sqrt_len_tokens": "mean_sqrt_len"}
_LEGACY_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_max_tokens": "max", "pooling_mode_lasttoken": "lasttoken",
                 "pooling_mode_weightedmean_tokens": "weightedmean",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens"}
_EMBEDDING_KEY = "sentence_embedding"
# Where sentence-transformers keeps each module class featx applies, by every name a modules.json
# may give it: the documented sentence_transformers.models.<Kind>, the legacy file-per-class
# spelling models.<Kind>.<Kind>, and sentence-transformers 5's module paths.
_ST_HOMES = {"Transformer": ("base.modules", "base.modules.transformer"),
             "Pooling": ("sentence_transformer.modules", "sentence_transformer.modules.pooling"),
             "Dense": ("base.modules", "base.modules.dense", "sentence_transformer.modules"),
             "LayerNorm": ("sentence_transformer.modules", "sentence_transformer.modules.layer_norm"),
             "Normalize": ("base.modules", "base.modules.normalize", "sentence_transformer.modules")}
ST_MODULE_TYPES = {f"sentence_transformers.{home}.{kind}": kind
                   for kind, homes in _ST_HOMES.items() for home in ("models", f"models.{kind}", *homes)}


@dataclass(frozen=True)
class DeclaredEmbedding:
    """What a sentence-transformers folder declares after its transformer (see the module docstring)."""

    pooling: str | None = None  # featx's name for the declared pooling; None: undeclared
    normalize: bool = False  # a Normalize module ends the pipeline
    # The modules between the pooling and that final Normalize, as JSON-able descriptions
    # (type, sizes, activation, and each weight file's sha256): they enter the fingerprint.
    modules: tuple[dict[str, Any], ...] = ()
    include_prompt: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    refusal: str | None = None  # why featx cannot reproduce the pipeline; None when it can


def read_declared(path: Path) -> DeclaredEmbedding:
    """The pipeline `path`'s modules.json declares; an empty declaration for a plain transformers folder."""
    prompts, default_prompt_name = _prompts(path)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return DeclaredEmbedding(prompts=prompts, default_prompt_name=default_prompt_name)
    try:
        entries = [(str(m.get("type", "")), str(m.get("path", ""))) for m in json.loads(modules_file.read_text())]
    except (OSError, ValueError, AttributeError, TypeError) as e:
        return DeclaredEmbedding(refusal=f"its modules.json cannot be read ({e})")
    try:
        return _declared(path, [(_kind(name), folder) for name, folder in entries], prompts, default_prompt_name)
    except _Refused as refused:
        return DeclaredEmbedding(prompts=prompts, default_prompt_name=default_prompt_name, refusal=str(refused))
    except (KeyError, ValueError, TypeError) as e:  # a module's config.json lacks a size or holds a wrong type
        return DeclaredEmbedding(prompts=prompts, default_prompt_name=default_prompt_name,
                                 refusal=f"a module's config.json cannot be read ({type(e).__name__}: {e})")


class _Refused(Exception):
    """A part of the pipeline featx cannot reproduce exactly (the message names it)."""


def _kind(type_name: str) -> str:
    """The sentence-transformers module kind a modules.json type names, by its full name."""
    if type_name in ST_MODULE_TYPES:
        return ST_MODULE_TYPES[type_name]
    if type_name.startswith("sentence_transformers."):
        raise _Refused(f"it declares a {type_name.rsplit('.', 1)[-1]} module, which featx does not apply")
    raise _Refused(f"it declares a module of type {type_name or '(none)'}, which is not one of sentence-transformers' "
                   f"own ({', '.join(_ST_HOMES)}): featx runs no other code")


def _declared(path: Path, entries: list[tuple[str, str]], prompts: dict[str, str],
              default_prompt_name: str | None) -> DeclaredEmbedding:
    if not entries or entries[0][0] != "Transformer":
        raise _Refused(f"its first module is {entries[0][0] if entries else 'missing'}, not a Transformer")
    settings = _json(path / "sentence_bert_config.json") if (path / "sentence_bert_config.json").is_file() else {}
    if settings.get("do_lower_case"):
        raise _Refused("its Transformer lower-cases every text (do_lower_case), which featx does not")
    pooling, include_prompt, normalize = None, True, False
    width = _hidden_size(path)  # the width of what the next module reads
    modules: list[dict[str, Any]] = []
    for position, (kind, folder) in enumerate(entries[1:], start=1):
        config = _json(path / folder / "config.json") if (path / folder / "config.json").is_file() else {}
        if normalize:  # a Normalize before this module is part of the chain, not the end
            modules.append({"type": "Normalize"})
            normalize = False
        if kind == "Pooling":
            if position != 1:
                raise _Refused("its Pooling module does not follow the Transformer")
            pooling, include_prompt = _pooling(config), bool(config.get("include_prompt", True))
            width = _pooled_width(config, width)
        elif pooling is None:
            raise _Refused(f"its {kind} module comes before any Pooling")
        elif kind == "Dense":
            modules.append(_dense(path / folder, config, width))
            width = modules[-1]["out_features"]
        elif kind == "LayerNorm":
            dimension = int(config["dimension"])
            _fits(f"its LayerNorm module ({folder})", "dimension", dimension, width)
            weights = _weights(path / folder, kind)
            _check_shapes(weights, kind, {"norm.weight": (dimension,), "norm.bias": (dimension,)})
            modules.append({"type": "LayerNorm", "dimension": dimension, "sha256": _sha256(weights)})
        elif kind == "Normalize":
            if config.get("module_input_name", _EMBEDDING_KEY) != _EMBEDDING_KEY:
                raise _Refused("its Normalize module works on token embeddings")
            normalize = True
        else:
            raise _Refused(f"it declares a {kind} module, which featx does not apply")
    return DeclaredEmbedding(pooling=pooling, normalize=normalize, modules=tuple(modules),
                             include_prompt=include_prompt, prompts=prompts, default_prompt_name=default_prompt_name)


def _pooling(config: dict[str, Any]) -> str:
    mode = config.get("pooling_mode")
    modes = ([mode] if isinstance(mode, str) else list(mode)) if mode else \
        [name for key, name in _LEGACY_MODES.items() if config.get(key)] or ["mean"]
    unknown = [m for m in modes if m not in ST_POOLINGS]
    if unknown:
        raise _Refused(f"its Pooling module uses the {unknown[0]} mode, which featx does not implement")
    if len(modes) > 1:
        raise _Refused(f"its Pooling module concatenates {' + '.join(modes)}; featx stores each pooling on its own "
                       "(pass --pooling to choose)")
    return ST_POOLINGS[modes[0]]


def _hidden_size(path: Path) -> int | None:
    """The transformer's hidden size from its config.json (None when it does not say)."""
    config = _json(path / "config.json") if (path / "config.json").is_file() else {}
    size = config.get("hidden_size", config.get("d_model"))
    return int(size) if isinstance(size, int) else None


def _pooled_width(config: dict[str, Any], hidden: int | None) -> int | None:
    """The pooled vector's width: the Pooling's word_embedding_dimension (one mode: featx refuses
    several), which must be the transformer's hidden size."""
    declared = config.get("word_embedding_dimension")
    if declared is None:
        return hidden
    _fits("its Pooling module", "word_embedding_dimension", int(declared), hidden)
    return int(declared)


def _fits(module: str, key: str, value: int, width: int | None) -> None:
    if width is not None and value != width:
        raise _Refused(f"{module} declares {key} {value}, but what reaches it is {width} wide")


def _check_shapes(weights: Path, kind: str, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse weights that cannot be read as safetensors, or whose tensors are not `expected`'s."""
    found = _tensor_shapes(weights, kind)
    if set(found) != set(expected):
        missing = sorted(set(expected) - set(found))
        odd = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(sorted(set(found) - set(expected)))}"
        raise _Refused(f"its {kind} weights {weights} hold {', '.join(sorted(found)) or 'no tensors'}, not "
                       f"{', '.join(sorted(expected))} ({odd})")
    for name, shape in expected.items():
        if found[name] != shape:
            raise _Refused(f"its {kind} weights {weights} hold {name} of shape {list(found[name])}, but its config "
                           f"needs {list(shape)}")


def _tensor_shapes(weights: Path, kind: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a safetensors file, its header and sizes checked (one line if damaged)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _Refused(f"its {kind} weights {weights} cannot be read ({first_line(e)[:160]}): the file is damaged; "
                       "restore or re-save the model") from None


def _dense(folder: Path, config: dict[str, Any], width: int | None) -> dict[str, Any]:
    for key in ("module_input_name", "module_output_name"):
        if config.get(key) not in (None, _EMBEDDING_KEY):
            raise _Refused(f"its Dense module reads or writes {config[key]!r}, not the sentence embedding")
    activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    name = activation.rsplit(".", 1)[-1]
    if not activation.startswith("torch.") or name not in ACTIVATIONS:
        raise _Refused(f"its Dense module's activation {activation} is not one featx applies "
                       f"({', '.join(ACTIVATIONS)})")
    spec = {"type": "Dense", "in_features": int(config["in_features"]), "out_features": int(config["out_features"]),
            "bias": bool(config.get("bias", True)), "activation": name,
            "residual": bool(config.get("use_residual", False))}
    _fits(f"its Dense module ({folder.name})", "in_features", int(config["in_features"]), width)
    weights = _weights(folder, "Dense")
    _check_shapes(weights, "Dense", _dense_shapes(spec))
    return {**spec, "sha256": _sha256(weights)}


def _dense_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensors a Dense of `spec`'s sizes holds (as _Dense names them), with their shapes."""
    n_in, n_out = spec["in_features"], spec["out_features"]
    shapes: dict[str, tuple[int, ...]] = {"linear.weight": (n_out, n_in)}
    if spec["bias"]:
        shapes["linear.bias"] = (n_out,)
    if spec["residual"] and n_in != n_out:
        shapes["residual.weight"] = (n_out, n_in)
    return shapes


def _weights(folder: Path, kind: str) -> Path:
    weights = folder / "model.safetensors"
    if weights.is_file():
        return weights
    if (folder / "pytorch_model.bin").is_file():
        raise FeatxError(f"{folder} holds its {kind} weights pickled (pytorch_model.bin): featx loads safetensors "
                         "only, because a pickle can run code when read; re-save the model with safetensors")
    raise _Refused(f"its {kind} module in {folder.name} has no weights (model.safetensors)")


def _json(file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise _Refused(f"{file.name} in {file.parent.name or 'the folder'} cannot be read ({e})") from None
    if not isinstance(loaded, dict):
        raise _Refused(f"{file} is not a JSON object")
    return loaded


def _prompts(path: Path) -> tuple[dict[str, str], str | None]:
    """(prompts by name, default prompt name) from config_sentence_transformers.json."""
    file = path / "config_sentence_transformers.json"
    try:
        settings = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError):
        return {}, None
    prompts = settings.get("prompts") or {}
    prompts = {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}
    name = settings.get("default_prompt_name")
    return prompts, str(name) if name else None


def embedding_fields(name: str, declared: DeclaredEmbedding, pooling: str | Sequence[str] | None,
                     normalize: bool | None, prompt: str | None, prompt_name: str | None) -> dict[str, Any]:
    """The config fields that say which vector is stored: with `pooling=None`, the model's own
    embedding (its declared pooling, modules and normalisation; refused in one line when featx
    cannot reproduce it), else the poolings asked for of the token states. The prompt (given,
    named, or the model's default_prompt_name) applies either way."""
    own = pooling is None
    if own and declared.refusal:
        raise FeatxError(f"featx cannot reproduce {name}'s own embedding: {declared.refusal}; pass --pooling for "
                         "plain poolings of its token states")
    if own:
        poolings: tuple[str, ...] = (declared.pooling or "mean",)
    else:
        poolings = tuple(p.strip() for p in pooling.split(",")) if isinstance(pooling, str) else tuple(pooling or ())
    text = resolve_prompt(declared, prompt, prompt_name)
    modules = json.dumps(list(declared.modules), sort_keys=True, separators=(",", ":")) \
        if own and declared.modules else None
    return {"poolings": poolings, "normalize": bool(declared.normalize if normalize is None else normalize),
            "prompt": text, "prompt_excluded": True if text and own and not declared.include_prompt else None,
            "modules": modules}


def resolve_prompt(declared: DeclaredEmbedding, prompt: str | None, prompt_name: str | None) -> str | None:
    """The prompt text: `prompt` as given ("" for none), the one named, else the model's default."""
    from featx.errors import ParameterError

    if prompt is not None and prompt_name is not None:
        raise ParameterError("prompt", "and prompt_name exclude each other: give one")
    if prompt_name is not None:
        if prompt_name not in declared.prompts:
            names = ", ".join(sorted(declared.prompts)) or "the model declares none"
            raise ParameterError("prompt_name", f"{prompt_name!r} is not one of the model's prompts ({names})")
        return declared.prompts[prompt_name] or None
    if prompt is None and declared.default_prompt_name:
        return declared.prompts.get(declared.default_prompt_name) or None
    return prompt or None


def prompt_tokens(tokenizer: Any, prompt: str) -> int:
    """How many leading tokens of a prompted text are the prompt's: its tokens with the
    special tokens before them, not a trailing one (as sentence-transformers counts)."""
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    return len(ids) - (1 if ids and ids[-1] in set(tokenizer.all_special_ids) else 0)


def _sha256(weights: Path) -> str:
    return files_sha256(weights.parent, [weights])
