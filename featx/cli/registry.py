"""`featx heads` and `featx modalities`: what is registered, with what each declares, read from
the registries themselves (featx.heads.HEAD_KINDS, featx.modalities.MODALITIES)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from featx.cli.commands import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the listing.")
def heads(as_json: bool) -> None:
    """List the head kinds `featx train --head` takes: what each fits and reads, and every
    parameter with its default and the values it may take.

    \b
    Example:
      featx heads
    """
    from featx.heads import HEAD_KINDS
    from featx.heads.base import TASK_NAMES, spec_value

    described: list[dict[str, Any]] = []
    for kind, cls in HEAD_KINDS.items():
        defaults = cls().get_params()
        described.append({"kind": kind, "summary": cls.summary, "tasks": [TASK_NAMES[t] for t in cls.tasks],
                          "reads": list(cls.reads),
                          "parameters": [{"name": name, "default": _plain(defaults.get(name)),
                                          "may_be": constraint.describe()}
                                         for name, constraint in cls.parameter_constraints.items()
                                         if name != "random_state"]})  # featx train's --seed
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for head in described:
        click.echo(f"{head['kind']}: {head['summary']}")
        click.echo(f"  fits {', '.join(head['tasks'])}; reads {', '.join(head['reads'])}")
        for parameter in head["parameters"]:
            default = parameter["default"]
            shown = "none" if default is None else spec_value(default, digits=".3g")
            click.echo(f"  {parameter['name']}={shown}  ({parameter['may_be']})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the listing.")
def modalities(as_json: bool) -> None:
    """List the registered modalities: the default model, the per-row flags their stores keep,
    and the backbones `featx frontier` measures on their inputs.

    \b
    Example:
      featx modalities
    """
    from featx.modalities import MODALITIES

    described = [_described(modality) for modality in MODALITIES.values()]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for modality in MODALITIES.values():
        frontier = ", ".join(f"{name} ({model})" for name, model, _ in modality.frontier_backbones) or "none"
        options = sorted({*modality.uses, *(f.name for f in dataclasses.fields(modality.options))})
        click.echo(f"{modality.name}: default model {modality.default_model or 'none (--model is needed)'}; "
                   f"row flags {', '.join(modality.row_flags)}; {modality.default_window_rows} rows a window; "
                   f"options of its own {', '.join(options) or 'none'}; featx frontier measures {frontier}")


def _described(modality: Any) -> dict[str, Any]:
    """A registered modality as `featx modalities --json` writes it."""
    own = [{"name": f.name, "default": _plain(f.default), "help": f.metadata.get("help", "")}
           for f in dataclasses.fields(modality.options)]
    return {"name": modality.name, "default_model": modality.default_model, "row_flags": dict(modality.row_flags),
            "window_rows": modality.default_window_rows, "uses": sorted(modality.uses), "options": own,
            "config_fields": [f.name for f in dataclasses.fields(modality.section)],
            "frontier_backbones": [{"name": name, "model": model, "work": work}
                                   for name, model, work in modality.frontier_backbones]}


def _plain(value: Any) -> Any:
    """A default as JSON writes it (a grid's tuple as a list)."""
    return list(value) if isinstance(value, tuple) else value
