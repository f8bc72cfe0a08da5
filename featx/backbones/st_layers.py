"""The modules a sentence-transformers folder declares after its pooling, built as torch
modules: Dense (a linear map, an activation, an optional residual), LayerNorm and Normalize,
with the parameter names sentence-transformers saves them under, so their safetensors load as
they are. featx.backbones.st_modules reads and checks the declaration; this builds it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from featx.backbones.hashing import files_sha256
from featx.errors import FeatxError, first_line

# Dense activations featx applies: torch.nn classes without parameters, by their class name.
ACTIVATIONS = {"Identity": torch.nn.Identity, "Tanh": torch.nn.Tanh, "ReLU": torch.nn.ReLU, "GELU": torch.nn.GELU,
               "Sigmoid": torch.nn.Sigmoid, "SiLU": torch.nn.SiLU}


def build_modules(path: Path, modules: tuple[dict[str, Any], ...]) -> torch.nn.Module:
    """The modules after the pooling as one float32 torch module, weights read from safetensors
    and checked against the sha256 the config recorded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    built: list[torch.nn.Module] = []
    folders = _module_folders(path)
    for index, spec in enumerate(modules):
        module: torch.nn.Module
        if spec["type"] == "Normalize":
            built.append(_L2())
            continue
        weights = folders[index] / "model.safetensors"
        if not weights.is_file():
            raise FeatxError(f"{weights} is missing: the model's {spec['type']} module has no weights")
        if files_sha256(weights.parent, [weights]) != spec["sha256"]:
            raise FeatxError(f"{weights} changed since the store was made: its sha256 differs from the config's")
        if spec["type"] == "Dense":
            module = _Dense(spec)
        else:
            module = _LayerNorm(spec["dimension"])
        try:
            module.load_state_dict(load_file(str(weights)))
        except (SafetensorError, OSError, RuntimeError) as e:  # damaged, or sizes that do not fit
            raise FeatxError(f"the {spec['type']} weights {weights} cannot be loaded ({first_line(e)[:160]}): "
                             "restore or re-save the model") from None
        built.append(module)
    return torch.nn.Sequential(*built).eval().requires_grad_(False)


def _module_folders(path: Path) -> list[Path]:
    """The folder of each module after the pooling, in modules.json order: the i-th of the
    config's modules is the (i + 2)-th entry (a final Normalize is `normalize`, not listed)."""
    entries = json.loads((path / "modules.json").read_text())
    return [path / str(m.get("path", "")) for m in entries[2:]]


class _Dense(torch.nn.Module):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(spec["in_features"], spec["out_features"], bias=spec["bias"])
        self.activation = ACTIVATIONS[spec["activation"]]()
        self.use_residual = bool(spec["residual"])
        if self.use_residual and spec["in_features"] != spec["out_features"]:
            self.residual = torch.nn.Linear(spec["in_features"], spec["out_features"], bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if hasattr(self, "residual") else x)
        return out


class _LayerNorm(torch.nn.Module):
    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(dimension)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(x)
        return out


class _L2(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, dim=-1)


