"""A text encoder's blocks, found and tapped: the ModuleList holding its transformer blocks
(`find_blocks`), and the input of block L captured during a forward (`capture_states`), or a forward
that stops there (`run_to_layer`). `featx extract --cache-layer L` keeps those token states; the
blocks head (featx.heads.blocks_model) runs the blocks above L on them.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from featx.errors import FeatxError


def find_blocks(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(owner, attribute, blocks): the module holding the model's transformer blocks as a ModuleList."""
    depth = model.config.num_hidden_layers  # type: ignore[union-attr]
    for owner in model.modules():
        for name, child in owner.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == depth:
                return owner, name, child
    raise FeatxError(f"cannot find the {depth} transformer blocks of {type(model).__name__}")


# The capture each thread has open: (block, sink, stop). Runner threads share one model, so the
# hook on a block is installed once and serves whichever thread is inside capture_states.
_CAPTURE = threading.local()


def _capture_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    capture = getattr(_CAPTURE, "active", None)
    if capture is None or capture[0] is not module:
        return
    capture[1].append(args[0] if args else kwargs["hidden_states"])
    if capture[2]:
        raise _Reached


@contextlib.contextmanager
def capture_states(model: torch.nn.Module, layer: int, stop: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collects the input of block `layer` (hidden states[layer]) of this thread's forwards in the
    list it yields; with `stop`, the forward ends there (the blocks above never run)."""
    block = find_blocks(model)[2][layer]
    with _HOOKING:
        if not getattr(block, "_featx_capture_hook", False):
            block.register_forward_pre_hook(_capture_hook, with_kwargs=True)
            setattr(block, "_featx_capture_hook", True)  # noqa: B010 (a plain attribute on a Module)
    seen: list[torch.Tensor] = []
    _CAPTURE.active = (block, seen, stop)
    try:
        yield seen
    except _Reached:
        pass
    finally:
        _CAPTURE.active = None


_HOOKING = threading.Lock()


class _Reached(Exception):
    """Ends a forward pass once the cached layer's states are in hand."""


def run_to_layer(model: torch.nn.Module, layer: int, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Hidden states[layer] of a batch, running only the embeddings and the blocks below `layer`."""
    with capture_states(model, layer, stop=True) as seen:
        model(**batch)
    return seen[0]
