"""The `featx` group and its data commands (extract, merge, info, predict, demo): each parses, calls, prints."""
from __future__ import annotations

import json

import click

from featx._version import __version__
from featx.cli.options import (
    DEVICE_OPTION,
    DTYPE_OPTION,
    QUIET_OPTION,
    Constrained,
    FeatxCommand,
    ModalityOptionsCommand,
    input_options,
    open_input_columns,
)
from featx.config import (
    COMPRESSIONS,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_MODEL,
    EXPORT_FORMATS,
    LONG_MODES,
    LONG_POOLINGS,
    POOLINGS,
    STATE_DTYPES,
    STORE_DTYPES,
)
from featx.constraints import COUNT, NON_NEGATIVE, Interval


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
@click.option("--model", help=f"Packaged short name, local transformers folder, or hub id (when online) "
                             f"[default: {DEFAULT_MODEL} for texts, {DEFAULT_IMAGE_MODEL} for images].")
@input_options()
@click.option("--pooling", help=f"Comma list of {', '.join(POOLINGS)} [default: the model's own; mean for MiniLM "
                               "and EfficientNet-Lite0, cls for ViT-like image models]; pooler: image models only.")
@click.option("--prompt", help="Text put before every text, as sentence-transformers' prompt= does (\"\" for none) "
                              "[default: the model's default_prompt_name, if it declares one].")
@click.option("--prompt-name", help="One of the prompts the model declares (config_sentence_transformers.json), "
                                   "e.g. query.")
@click.option("--layers", default="-1", show_default=True,
              help="Hidden states to pool: -1 (last), -4: (last four, concatenated), or a list -4,-1.")
@click.option("--max-length", type=Constrained(COUNT), help="Token limit per row [default: the model's, 256 for MiniLM].")
@click.option("--long", type=click.Choice(LONG_MODES), default="truncate", show_default=True,
              help="Rows over --max-length: truncate (counted in the store), or chunk: embed every window of "
                   "--max-length tokens and pool a row's windows.")
@click.option("--stride", type=Constrained(NON_NEGATIVE),
              help="chunk: tokens consecutive windows share [default: min(32, max-length/4)].")
@click.option("--long-pooling", type=click.Choice(LONG_POOLINGS), default="mean", show_default=True,
              help="chunk: how a row's window vectors become one.")
@click.option("--keep-windows", is_flag=True,
              help="chunk: also keep every row's window vectors (float32), for a windows head that learns how "
                   "much each window counts.")
@click.option("--cache-layer", type=Constrained(Interval(int)), default=None,
              help="Also keep every row's token states at this hidden-state index (0 = embeddings; -2 = below the "
                   "last two blocks), for a blocks head that trains the blocks above it. Costs tokens x hidden x 2 "
                   "bytes: about 0.7 GB for SST-2's 67,349 phrases with MiniLM.")
@click.option("--cache-dtype", type=click.Choice(STATE_DTYPES), default=None,
              help="--cache-layer: how the token states are stored [default: float16].")
@click.option("--backend", default=None,
              help="What runs the model: torch, openvino on the CPU (pip install 'featx[openvino]'; text models, "
                   "and image models given as torch modules) or another registered backend; auto: "
                   "openvino where it is installed and applies [default: the backend of the store at -o when "
                   "continuing it, else auto].")
@click.option("--normalize/--no-normalize", default=None,
              help="L2-normalise every stored vector [default: as the model does; yes for MiniLM].")
@DTYPE_OPTION
@click.option("--store-dtype", type=click.Choice(STORE_DTYPES), default="float32", show_default=True)
@click.option("--batch-tokens", type=Constrained(COUNT), default=None,
              help="Budget per batch: tokens for texts (rows x padded length) [default: 2048 on CPU, 1024 with "
                   "OpenVINO, 16384 on GPU], "
                   "images for images [default: 32 on CPU, 256 on GPU].")
@click.option("--skip-bad", is_flag=True, help="Images: skip an undecodable image (counted in the store, NaN "
                                               "vectors, left out by heads) instead of stopping.")
@click.option("--window-rows", type=Constrained(COUNT), default=None,
              help="Rows per commit window; a crash loses at most one window [default: 4096; for shards of a "
                   "smaller input, rows / shards].")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default=None, help="HDF5 compression.")
@DEVICE_OPTION
@click.option("--overwrite", is_flag=True, help="Replace an existing store made differently.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model's own Python code to run.")
@click.option("--shard", "shard_spec", help="I/N: embed only the I-th of N contiguous parts, into "
              "OUTPUT's stem + .shard-I-of-N.h5 [default under torchrun or Slurm: the process's rank].")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Reuse vectors of texts embedded before "
              "with the same settings (keyed by content sha256); new vectors are added to it.")
@click.option("--merge", "merge_after", is_flag=True,
              help="Under torchrun: after every rank is done, rank 0 merges the shards into OUTPUT.")
@QUIET_OPTION
def extract(input: str, output: str, model: str | None, pooling: str | None, prompt: str | None,
            prompt_name: str | None, layers: str, max_length: int | None,
            long: str, stride: int | None, long_pooling: str, keep_windows: bool, cache_layer: int | None,
            cache_dtype: str | None, backend: str | None,
            normalize: bool | None, dtype: str, store_dtype: str, batch_tokens: int | None, skip_bad: bool,
            window_rows: int | None,
            compression: str | None, device: str, overwrite: bool, trust_remote_code: bool, shard_spec: str | None,
            cache_dir: str | None, merge_after: bool, quiet: bool, **columns: object) -> None:
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
    """
    from featx.extraction.launch import extract_as_launched
    from featx.modalities import modality_options
    from featx.options import ModelOptions, RunOptions, StoreOptions, VectorOptions

    own = {name: value for name in modality_options() if (value := columns.pop(name, None)) is not None}
    store = extract_as_launched(
        open_input_columns(input, columns), output, shard=shard_spec, merge=merge_after, skip_bad=skip_bad, **own,
        model=ModelOptions(model, dtype=dtype, device=device, backend=backend, trust_remote_code=trust_remote_code),
        vectors=VectorOptions(pooling=pooling, layers=layers, normalize=normalize, max_length=max_length, long=long,
                              stride=stride, long_pooling=long_pooling, prompt=prompt, prompt_name=prompt_name),
        store=StoreOptions(store_dtype=store_dtype, compression=compression, overwrite=overwrite,
                           cache_layer=cache_layer, cache_dtype=cache_dtype, keep_windows=keep_windows),
        run=RunOptions(batch_tokens=batch_tokens, window_rows=window_rows, progress=False if quiet else None,
                       cache_dir=cache_dir))
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
