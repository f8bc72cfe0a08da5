"""`load_backbone`: a name, folder or hub id (see folders.py) to a frozen text model."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from featx.backbones.folders import TOKENIZER_FILES, packaged_folder, resolve_model_folder, weight_files
from featx.backbones.hashing import files_sha256
from featx.backbones.st_modules import DeclaredEmbedding, read_declared
from featx.backbones.static import is_static, static_backbone
from featx.config import DEFAULT_MODEL
from featx.errors import FeatxError, first_line
from featx.hardware import resolve_device

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# A sentence any real text tokenizer splits into several distinct, known tokens.
_PROBE_TEXT = "The quick brown fox jumps over the lazy dog near 42 rivers."


@dataclass
class Backbone:
    """A frozen model in eval mode, its tokenizer, and what identifies them."""

    name: str
    path: Path
    model: PreTrainedModel
    tokenizer: Any  # a transformers fast tokenizer
    device: torch.device
    weights_sha256: str
    tokenizer_sha256: str
    hidden_size: int
    num_hidden_states: int  # embeddings output + one per block
    default_max_length: int
    max_positions: int | None = None  # the most tokens the position embeddings cover (None: no limit known)
    # The model's own sentence embedding and prompts, as a sentence-transformers folder declares
    # them (modules.json, 1_Pooling/config.json, config_sentence_transformers.json).
    declared: DeclaredEmbedding = field(default_factory=DeclaredEmbedding)
    # Token ids the pooling leaves out beside padding (a static model's unknown token, as model2vec does).
    pooling_skips: tuple[int, ...] = ()
    static: bool = False  # a token table (featx.backbones.static), not a transformer


def load_backbone(name_or_path: str = DEFAULT_MODEL, *, device: str | torch.device = "auto",
                  trust_remote_code: bool = False) -> Backbone:
    """A frozen, eval-mode transformers model and tokenizer, ready for inference; ``static:NAME``: the
    token table model2vec distils from NAME (featx.backbones.static)."""
    import transformers

    device = device if isinstance(device, torch.device) else resolve_device(device)
    if is_static(name_or_path):
        return Backbone(**static_backbone(name_or_path, device))
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = resolve_model_folder(name_or_path)
    weights = weight_files(path)
    tokenizer_files = [path / n for n in TOKENIZER_FILES if (path / n).is_file()]
    if not tokenizer_files:
        raise FeatxError(f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...): "
                         "save the tokenizer into the model folder (tokenizer.save_pretrained)")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = transformers.AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                       use_safetensors=True)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, EnvironmentError, ...
        raise FeatxError(f"cannot load a transformers model from {path}: {first_line(e)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FeatxError(f"{name_or_path} has no fast (Rust) tokenizer; featx needs one (tokenizer.json)")
    _check_tokenizer(tokenizer, path)
    model.eval().requires_grad_(False).to(device)
    config = model.config
    # A local folder is recorded by absolute path so a saved predictor can find it again.
    is_local = packaged_folder(name_or_path) is None and Path(name_or_path).expanduser().is_dir()
    return Backbone(
        name=str(path) if is_local else name_or_path,
        path=path,
        model=model,
        tokenizer=tokenizer,
        device=device,
        weights_sha256=files_sha256(path, weights),
        tokenizer_sha256=files_sha256(path, tokenizer_files),
        hidden_size=config.hidden_size,
        num_hidden_states=config.num_hidden_layers + 1,
        default_max_length=_default_max_length(path, tokenizer, config),
        max_positions=_max_positions(model),
        declared=read_declared(path),
    )


def _check_tokenizer(tokenizer: Any, path: Path) -> None:
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


def _default_max_length(path: Path, tokenizer: Any, config: Any) -> int:
    """The length the model was trained for: sentence-transformers' max_seq_length, else the tokenizer's."""
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        length = json.loads(st_config.read_text()).get("max_seq_length")
        if length:
            return int(length)
    candidates = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min([int(x) for x in candidates if x and x < 100_000] + [512])
