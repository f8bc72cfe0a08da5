"""The blocks head's model: the top blocks of a text encoder, run alone on cached token states.

A store made with ``--cache-layer L`` keeps each row's hidden states at index L: the input
of block L. `TopBlocks` is the encoder that owns the blocks, copied with only blocks
L.. kept, followed by the pooling and a linear classifier, so a head trains the top of the
network without ever running the embeddings or the blocks below L again.

The encoder is found as the module that owns the blocks' ModuleList (BertEncoder,
MPNetEncoder, ...) and is called as the full model calls it: hidden states and the
attention mask transformers builds for that model (`create_bidirectional_mask`), so
relative position biases and attention kernels are the model's own. Whether that holds
for a given architecture is not assumed: `check_runs_alone` compares the copy against the
full model on a probe input before any state is cached.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from featx.backbones.blocks import capture_states, find_blocks
from featx.errors import FeatxError
from featx.pooling import POOLERS

# How close (max |diff| over the probe's last hidden states, fp32) the copied blocks must come
# to the full model: rounding only. A wrong mask or a missing position bias is off by far more.
RUNS_ALONE_TOLERANCE = 1e-4


class TopBlocks(torch.nn.Module):
    """Blocks layer.. of an encoder, its pooling and a linear classifier: token states in, logits out."""

    def __init__(self, model: torch.nn.Module, layer: int, n_classes: int, pooling: str) -> None:
        super().__init__()
        owner, name, blocks = find_blocks(model)
        kept = torch.nn.ModuleList(list(blocks)[layer:])
        # Copy the owner without copying the blocks it is about to drop.
        setattr(owner, name, torch.nn.ModuleList())
        try:
            self.encoder = copy.deepcopy(owner)
        finally:
            setattr(owner, name, blocks)
        setattr(self.encoder, name, copy.deepcopy(kept))
        self.blocks: torch.nn.ModuleList = getattr(self.encoder, name)
        config: Any = model.config
        self.model_config = config
        self.pooling = pooling
        self.classifier = torch.nn.Linear(int(config.hidden_size), n_classes)

    def hidden(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states, from the states at the cached layer."""
        from transformers.masking_utils import create_bidirectional_mask

        attention = create_bidirectional_mask(config=self.model_config, inputs_embeds=states, attention_mask=mask)
        out = self.encoder(states, attention_mask=attention)
        result: torch.Tensor = out[0] if isinstance(out, tuple) else out.last_hidden_state
        return result

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = POOLERS[self.pooling](self.hidden(states, mask).float(), mask)
        logits: torch.Tensor = self.classifier(pooled)
        return logits


def top_blocks_from_config(config: dict[str, Any], layer: int, n_classes: int, pooling: str) -> TopBlocks:
    """An untrained TopBlocks of the architecture `config` describes (a transformers config as a
    dict), to load saved weights into; the model is built on the meta device, so nothing big is
    allocated for the blocks it drops."""
    from transformers import AutoConfig, AutoModel

    fields = dict(config)
    model_type = fields.pop("model_type")
    with torch.device("meta"):
        model = AutoModel.from_config(AutoConfig.for_model(model_type, **fields))  # type: ignore[no-untyped-call]
    top = TopBlocks(model, layer, n_classes, pooling)
    return top.to_empty(device="cpu")


@torch.inference_mode()
def check_runs_alone(backbone: Any, layer: int) -> None:
    """Refuse, in one line, a model whose blocks from `layer` up featx cannot run apart from the rest."""
    model = backbone.model
    try:
        encoded = backbone.tokenizer(["featx runs the top blocks alone.", "a shorter one"], padding=True,
                                     return_tensors="pt", return_token_type_ids=False)
        batch = {k: encoded[k].to(backbone.device) for k in ("input_ids", "attention_mask")}
        with capture_states(model, layer) as seen:
            full = model(**batch).last_hidden_state.float()
        top = TopBlocks(model, layer, 2, "mean").to(backbone.device).eval()
        alone = top.hidden(seen[0].float(), batch["attention_mask"]).float()
        mask = batch["attention_mask"].bool()
        difference = float((full - alone)[mask].abs().max())
    except FeatxError:
        raise
    except Exception as e:  # an encoder whose forward wants more than states and a mask
        raise FeatxError(f"featx cannot run the blocks of {backbone.name} from layer {layer} on their own "
                         f"({type(e).__name__}: {e}); --cache-layer supports BERT-style encoders") from None
    if not difference <= RUNS_ALONE_TOLERANCE:
        raise FeatxError(f"featx cannot run the blocks of {backbone.name} from layer {layer} on their own (they "
                         f"differ from the full model by {difference:.3g}); --cache-layer supports BERT-style "
                         "encoders")
