"""The `featx` group and its data commands (extract, merge, info, predict, demo): each parses, calls, prints."""
from __future__ import annotations

import json
from typing import Any

import click

from featx._version import __version__
from featx.cli.options import (
    DEVICE_OPTION,
    EXTRACT_GROUPS,
    QUIET_OPTION,
    Constrained,
    FeatxCommand,
    ModalityOptionsCommand,
    flagged_fields,
    group_options,
    input_options,
    open_input_columns,
)
from featx.config import (
    EXPORT_FORMATS,
)
from featx.constraints import COUNT, NON_NEGATIVE
from featx.errors import ParameterError


class FeatxGroup(click.Group):
    command_class = FeatxCommand


@click.group(cls=FeatxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="featx")
def cli() -> None:
    """featx: embed a dataset once with a frozen backbone, cache it in HDF5, train cheap heads.

    \b
    Examples:
      featx extract sst2:dev -o runs/sst2-dev.h5
      featx extract reviews.jsonl.gz -o cache/train.h5 --text-column text --pooling mean,cls
      featx info runs/sst2-dev.h5
    """


@cli.command(cls=ModalityOptionsCommand)
@click.argument("input")
@click.option("-o", "--output", required=True, help="Store file to write (.h5); resumed if it exists.")
@input_options()
@group_options(*EXTRACT_GROUPS)  # each flag is a field of featx.options, declared there once
@click.option("--shard", "shard_spec", help="I/N: embed only the I-th of N contiguous parts, into "
              "OUTPUT's stem + .shard-I-of-N.h5 [default under torchrun or Slurm: the process's rank].")
@click.option("--merge", "merge_after", is_flag=True,
              help="Under torchrun: after every rank is done, rank 0 merges the shards into OUTPUT.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: N shards as Ray tasks (retried where a worker dies), then merged into OUTPUT; "
                   "needs pip install 'featx[ray]'.")
@click.option("--shards", type=Constrained(COUNT), metavar="N", help="--engine ray: how many shards [default: 4 per worker].")
@click.option("--address", help="--engine ray: the Ray cluster to run on [default: a local one].")
@QUIET_OPTION
def extract(input: str, output: str, shard_spec: str | None, merge_after: bool, engine: str, shards: int | None,
            address: str | None, quiet: bool, **given: object) -> None:
    """Embed every row of INPUT into the store OUTPUT (resumable: rerun the same command).

    INPUT is a .csv, .tsv, .jsonl, .txt or .parquet file (.gz allowed) or a bundled
    dataset: sst2:train, sst2:dev, sst2:test. Images: a folder with one subfolder per
    class, a .zip of one (ARCHIVE.zip:FOLDER reads a folder inside it), or a table
    with --image-column.

    \b
    Examples:
      featx extract sst2:dev -o runs/sst2-dev.h5 --pooling mean,cls
      featx extract ../shared/data/sst2/dev.tsv -o dev.h5 --text-column content --label-column label
      featx extract imdb/train.jsonl.gz -o imdb-train.h5 --max-length 256 --id-column id
      featx extract notes.txt -o notes.h5 --model ./my-bert --layers -4: --normalize
      featx extract cifar10-jpg.zip:train -o cifar-train.h5 --model efficientnet-lite0
      featx extract sst2:train -o sst2-train.h5 --cache-layer -2
      featx extract imdb/train.jsonl.gz -o imdb-train.h5 --long chunk --keep-windows
      featx extract queries.txt -o queries.h5 --model ./e5-small --prompt-name query
      featx extract big.jsonl -o big.h5 --engine ray --shards 64 --address auto
    """
    from featx.extraction.launch import extract_as_launched
    from featx.modalities import modality_options

    # The flags made from featx.options' groups are featx.extract's keywords; a registered modality's
    # own flags (None: not given) go to it; the input options read the input.
    own: dict[str, Any] = {name: value for name in modality_options() if (value := given.pop(name, None)) is not None}
    options: dict[str, Any] = {f.name: given.pop(f.name) for f in flagged_fields(*EXTRACT_GROUPS)}
    progress = False if quiet else None
    if engine == "ray":
        from featx.extraction.ray_engine import extract_with_ray

        if shard_spec is not None or merge_after:
            raise ParameterError("shard" if shard_spec is not None else "merge",
                                 "is decided by --engine ray: give --shards N (it merges at the end)")
        store = extract_with_ray(open_input_columns(input, given), output, shards=shards, address=address,
                                 progress=progress, **options, **own)
    else:
        if shards is not None or address is not None:
            raise ParameterError("shards" if shards is not None else "address", "needs --engine ray")
        store = extract_as_launched(open_input_columns(input, given), output, shard=shard_spec, merge=merge_after,
                                    progress=progress, **options, **own)
    if store is None:
        return
    with store:
        if not quiet:
            from featx.store import summary_line

            click.echo(summary_line(store.info()), err=True)


@cli.command()
@click.argument("shards", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Merged store to write.")
@click.option("--copy", is_flag=True, help="Copy the rows into a standalone file instead of virtual datasets.")
def merge(shards: tuple[str, ...], output: str, copy: bool) -> None:
    """Join the complete shards of one extraction into one store.

    Checks that the shards share a fingerprint and input, are complete and cover every
    row exactly once. The result's datasets are HDF5 virtual datasets over the shard
    files (keep them beside it), or a standalone copy with --copy.

    \b
    Example:
      featx merge cache/train.shard-*-of-4.h5 -o cache/train.h5
    """
    from featx.store import open_store
    from featx.store.merge import merge_shards

    merged = merge_shards(list(shards), output, copy=copy)
    with open_store(merged) as store:
        click.echo(f"{merged}: {len(store):,} rows from {len(shards)} shards"
                   + (" (copied)" if copy else " (virtual datasets over the shards)"), err=True)


@cli.command()
@click.argument("store")
@click.option("-o", "--output", required=True, help="Folder to write (new or empty, or an earlier export).")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="npy", show_default=True,
              help="npy: one .npy per pooling and per row column; parquet: one vectors.parquet (featx[parquet]).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in OUTPUT (never other files).")
def export(store: str, output: str, fmt: str, overwrite: bool) -> None:
    """Write a complete store's vectors, ids, labels and flags as plain files, with its config and
    fingerprint in featx-export.json: numpy, pyarrow or pandas read them without featx.

    \b
    Example:
      featx export cache/train.h5 -o exports/train --format parquet
    """
    from featx.store.export import export_store

    folder = export_store(store, output, fmt, overwrite=overwrite)
    click.echo(f"{folder}: exported {store} as {fmt}", err=True)


@cli.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--verify", type=Constrained(COUNT), metavar="N",
              help="Spot check: embed N random rows again (torch, fp32, no cache) and compare by cosine; exit 1 "
                   "when the worst row is below the floor for the store's dtype.")
@click.option("--input", "input_path", metavar="INPUT",
              help="With --verify: the input the store was made from [default: the path the store records].")
@click.option("--seed", type=Constrained(NON_NEGATIVE), default=0, show_default=True,
              help="With --verify: which rows are drawn.")
def info(store: str, as_json: bool, verify: int | None, input_path: str | None, seed: int) -> None:
    """Describe a store: rows, progress, poolings, labels, config, hardware, timings.

    \b
    Examples:
      featx info runs/sst2-dev.h5 --json
      featx info runs/sst2-dev.h5 --verify 64 --seed 1 --input dev.csv
    """
    from featx.store import format_info, open_store

    if verify is None and input_path is not None:
        raise click.UsageError("--input applies with --verify N")
    with open_store(store, allow_incomplete=True) as opened:
        details = opened.info()
    report = None
    if verify is not None:
        from featx.verify import verify_store

        report = verify_store(store, verify, input=input_path, seed=seed)
        details["verify"] = report.to_dict()
    if as_json:
        click.echo(json.dumps(details, indent=2))
    else:
        click.echo(format_info({k: v for k, v in details.items() if k != "verify"}))
        if report is not None:
            click.echo(report.describe())
    if report is not None and not report.passed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("model_dir")
@click.argument("input")
@click.option("-o", "--output", help="JSON-lines file to write [default: standard output].")
@input_options()
@DEVICE_OPTION
@QUIET_OPTION
def predict(model_dir: str, input: str, output: str | None, device: str, quiet: bool, **columns: object) -> None:
    """Classify every row of INPUT with a predictor or a fine-tuned checkpoint; one JSON line per row.

    Each line holds the row's id, the predicted label and every class's probability.

    \b
    Example:
      featx predict model/ sst2:test -o predictions.jsonl
    """
    from featx.predictor import load_predictor, write_predictions

    predictor = load_predictor(model_dir, device=device)
    write_predictions(predictor, open_input_columns(input, columns), output, progress=False if quiet else None)


@cli.command()
@click.option("-o", "--output", default="featx-demo", show_default=True, help="Folder for stores, heads, predictor.")
@click.option("--train-rows", type=Constrained(COUNT), default=8000, show_default=True, help="SST-2 train phrases to use.")
@click.option("--seed", type=Constrained(NON_NEGATIVE), default=0, show_default=True)
@DEVICE_OPTION
def demo(output: str, train_rows: int, seed: int, device: str) -> None:
    """Extract bundled SST-2 with the packaged MiniLM, train two heads, print the results table.

    \b
    Example:
      featx demo -o featx-demo
    """
    from featx.demo import run_demo

    run_demo(output, train_rows=train_rows, seed=seed, device=device, echo=click.echo)
