"""Static embeddings: `--model static:NAME` distils a table of token vectors from the sentence
model NAME (a packaged name, a local folder or a hub id; model2vec) once, caches it, and embeds a
text as the mean of its tokens' vectors, as model2vec's `StaticModel.encode` does.

The distilled model is model2vec's with its defaults (DISTILL): each vocabulary token embedded
alone by NAME, reduced to 256 dimensions by PCA, weighted by SIF from its Zipf rank, stored in
float16. It is made once per (NAME's weights and tokenizer, model2vec's version, DISTILL) and kept
in ``$FEATX_CACHE/static/<key>/``, sealed like every featx cache (featx.caches) and checked on
use; the store's fingerprint takes its weights' sha256 like any model's, so two machines whose
distillations differ in a bit never share a cache or a store.

Featx then runs it as a one-layer backbone: the tokenizer adds no special tokens, the "model" is
the table (an embedding lookup), the unknown token is left out of the mean (model2vec drops it;
the pad token too, which featx gives an empty text so that it keeps its row: a zero vector, as in
model2vec), and the declared embedding is model2vec's: mean pooling, L2-normalised. Everything
else (batches, stores, resume, shards, heads, predictors) is featx's own. It runs in torch:
OpenVINO has nothing to speed up in a table lookup.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from featx.backbones.folders import TOKENIZER_FILES, packaged_folder, resolve_model_folder, weight_files
from featx.backbones.hashing import files_sha256
from featx.backbones.st_modules import DeclaredEmbedding
from featx.caches import CacheUnwritable, cache_folder, cached_folder, folder_holds
from featx.errors import FeatxError, first_line
from featx.progress import status

PREFIX = "static:"
# model2vec's distill() defaults, written out so that they enter the cache key and the record.
DISTILL: dict[str, Any] = {"pca_dims": 256, "sif_coefficient": 1e-4, "token_remove_pattern": r"\[unused\d+\]",
                           "quantize_to": "float16"}
MAX_LENGTH = 512  # model2vec's encode truncates at 512 tokens by default
_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def is_static(name: str) -> bool:
    return str(name).startswith(PREFIX)


class StaticEmbedding(torch.nn.Module):
    """A token table as a featx backbone module: its hidden states are each token's vector."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Embedding.from_pretrained(vectors.float(), freeze=True)  # type: ignore[no-untyped-call]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        states = self.table(input_ids)
        return BaseModelOutput(last_hidden_state=states, hidden_states=(states,) if output_hidden_states else None)


def distilled_folder(name: str) -> Path:
    """The cached model2vec distillation of the model `name` names after ``static:``, made when missing."""
    if not name.removeprefix(PREFIX).strip():
        raise FeatxError("static: needs the sentence model to distil after it, e.g. static:all-MiniLM-L6-v2")
    model2vec = require_model2vec()
    base = resolve_model_folder(name.removeprefix(PREFIX))
    tokenizer_files = [base / n for n in TOKENIZER_FILES if (base / n).is_file()]
    source = files_sha256(base, weight_files(base) + tokenizer_files)
    recipe = json.dumps({**DISTILL, "model2vec": model2vec.__version__}, sort_keys=True)
    key = hashlib.sha256(f"{source}\n{recipe}".encode()).hexdigest()[:24]
    folder = cache_folder() / "static" / key
    if not folder_holds(folder, _FILES):
        status(f"distilling a static model from {name.removeprefix(PREFIX)} with model2vec {model2vec.__version__}, "
               f"once (about a minute for MiniLM on 2 cores; kept in {folder.parent})", show=True)
    try:
        return cached_folder(folder, _FILES, lambda scratch: _distil(base, scratch, recipe),
                             what=f"the distilled model {key}", kind="static_models",
                             redone="it was distilled again and replaced")
    except CacheUnwritable as e:  # the table is read from the cache, so it must be writable
        raise FeatxError(str(e)) from None


def _distil(base: Path, scratch: Path, recipe: str) -> None:
    """Distil `base` into `scratch`, with the recipe beside the table."""
    from model2vec.distill import distill

    try:
        model = distill(model_name=str(base), **DISTILL)
        model.save_pretrained(scratch)
        (scratch / "featx-recipe.json").write_text(recipe + "\n", encoding="utf-8")
    except Exception as e:
        raise FeatxError(f"model2vec could not distil {base} ({first_line(e)[:200]})") from None


def static_backbone(name: str, device: torch.device) -> dict[str, Any]:
    """The fields of featx.backbones.text.Backbone for ``static:NAME``."""
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    folder = distilled_folder(name)
    base = name.removeprefix(PREFIX)
    if packaged_folder(base) is None and Path(base).expanduser().is_dir():  # recorded absolute, as text.py does
        name = PREFIX + str(Path(base).expanduser().resolve())
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(folder / "model.safetensors")
    if "embeddings" not in tensors or tensors["embeddings"].ndim != 2:
        raise FeatxError(f"{folder} holds no 2-D 'embeddings' table: delete the folder to distil again")
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_file=str(folder / "tokenizer.json"), unk_token="[UNK]", pad_token="[PAD]",
        model_max_length=MAX_LENGTH)
    model = StaticEmbedding(tensors["embeddings"]).eval().requires_grad_(False).to(device)
    return dict(
        name=name, path=folder, model=model, tokenizer=tokenizer, device=device,
        weights_sha256=files_sha256(folder, [folder / "model.safetensors"]),
        tokenizer_sha256=files_sha256(folder, [folder / "tokenizer.json"]),
        hidden_size=int(tensors["embeddings"].shape[1]), num_hidden_states=1, default_max_length=MAX_LENGTH,
        declared=DeclaredEmbedding(pooling="mean", normalize=bool(config.get("normalize", True))),
        pooling_skips=(int(tokenizer.unk_token_id), int(tokenizer.pad_token_id)), static=True)


def require_model2vec() -> Any:
    try:
        import model2vec
        import skeletoken  # noqa: F401  (what model2vec's distill needs)
    except ImportError:
        raise FeatxError('static models need model2vec: pip install "featx[static]"') from None
    return model2vec
