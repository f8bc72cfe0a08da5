"""Options several commands share, declared once; choices come from the library's own tables."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from featx.config import DTYPES
from featx.data.readers import FORMATS

if TYPE_CHECKING:
    from featx.data import Source


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def combined(*decorators: Decorator) -> Decorator:
    """Several click options as one decorator, so commands share them as written once."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def input_options(what: str = "INPUT") -> Decorator:
    """How to read an input file; the command receives them as **columns for `open_input_columns`."""
    return combined(
        click.option("--text-column", help="Column with the text [default: text; sentence for bundled SST-2]."),
        click.option("--image-column", help="Column with image paths, relative to the table: read it as images."),
        click.option("--label-column", help="Column with the label [default: label, when present]."),
        click.option("--id-column", help="Column with row ids [default: the 0-based row index]."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format [default: from the name]."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are 0, 1, ..."),
        click.option("--encoding", help=f"Text encoding of {what}, e.g. cp1252 [default: utf-8]."))


def protocol_options() -> Decorator:
    """How `featx train` evaluates; the command passes them on to featx.train.run_training."""
    return combined(
        click.option("--protocol", type=click.Choice(["full", "mteb"]), default="full", show_default=True,
                     help="full: train / select on validation / report on test. mteb: MTEB's few-shot logistic "
                          "regression, exactly (featx.mteb): k rows per label, --experiments draws, mean on test."),
        click.option("--task", help="mteb: an MTEB task name (e.g. Banking77Classification); sets --k and "
                                    "--experiments as MTEB does."),
        click.option("--k", type=int, help="mteb: rows per label [default: the task's, else 8]."),
        click.option("--experiments", type=int, help="mteb: draws of k rows per label [default: the task's, else 10]."),
        click.option("--seeds", type=int, default=50, show_default=True,
                     help="mteb: also report the task score under sampler seeds 0..N-1 (mean, sd, min, max); 0 skips."))


def open_input_columns(spec: str, columns: dict[str, Any]) -> Source:
    """The Source for `spec` read as the `input_options` in `columns` say: images for a folder,
    a .zip (or ``X.zip:FOLDER``) or a table with --image-column, else a table of texts."""
    from featx.data import open_input
    from featx.data.images import is_image_input, open_images

    options = dict(columns)
    image_column = options.pop("image_column", None)
    if image_column is not None or is_image_input(spec):
        text_only = [f"--{k.replace('_', '-')}" for k in ("text_column", "id_column", "fmt", "encoding")
                     if options.get(k)] + (["--no-header"] if options.get("no_header") else [])
        if text_only:
            raise click.UsageError(f"{text_only[0]} applies to texts; {spec} is read as images")
        return open_images(spec, image_column=image_column, label_column=options.get("label_column"))
    return open_input(spec, header=not options.pop("no_header"), **options)


DEVICE_OPTION = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
DTYPE_OPTION = click.option("--dtype", type=click.Choice(["auto", *DTYPES]), default="auto", show_default=True,
                      help="Compute dtype; auto = bf16 where the hardware has fast bf16, else fp32.")
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
