"""The `featx` command line: parses options, calls the Python API, prints; nothing more.

Over 400 lines because it declares nine commands and their help in one place, one
--help surface; the logic behind each lives in the library (issue 11 takes it under 300
by moving the remaining formatting out).
"""
from __future__ import annotations

import json
import os
import sys

import click

from featx._version import __version__
from featx.config import DEFAULT_MODEL, DTYPES, POOLINGS, STORE_DTYPES
from featx.data.readers import FORMATS
from featx.errors import FeatxError, ParameterError, describe_os_error


def _options(*decorators):
    """Several click options as one decorator, so commands share them as written once."""
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def _input_options(what: str = "INPUT"):
    """How to read an input file; the command receives them as **columns for `_open`."""
    return _options(
        click.option("--text-column", help="Column with the text [default: text; sentence for bundled SST-2]."),
        click.option("--label-column", help="Column with the label [default: label, when present]."),
        click.option("--id-column", help="Column with row ids [default: the 0-based row index]."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), help="Input format [default: from the name]."),
        click.option("--no-header", is_flag=True, help="CSV/TSV without a header row: columns are 0, 1, ..."),
        click.option("--encoding", help=f"Text encoding of {what}, e.g. cp1252 [default: utf-8]."))


def _open(spec: str, columns: dict):
    from featx.data import open_input

    options = dict(columns)
    return open_input(spec, header=not options.pop("no_header"), **options)


_DEVICE = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:K.")
_DTYPE = click.option("--dtype", type=click.Choice(["auto", *DTYPES]), default="auto", show_default=True,
                      help="Compute dtype; auto = bf16 where the hardware has fast bf16, else fp32.")
_QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="featx")
def cli() -> None:
    """featx: embed a dataset once with a frozen backbone, cache it in HDF5, train cheap heads.

    \b
    Examples:
      featx extract sst2:dev -o runs/sst2-dev.h5
      featx extract reviews.jsonl.gz -o cache/train.h5 --text-column text --pooling mean,cls
      featx info runs/sst2-dev.h5
    """


@cli.command()
@click.argument("input")
@click.option("-o", "--output", required=True, help="Store file to write (.h5); resumed if it exists.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Packaged short name, local transformers folder, or hub id (when online).")
@_input_options()
@click.option("--pooling", help=f"Comma list of {', '.join(POOLINGS)} [default: the model's own; mean for MiniLM].")
@click.option("--layers", default="-1", show_default=True,
              help="Hidden states to pool: -1 (last), -4: (last four, concatenated), or a list -4,-1.")
@click.option("--max-length", type=int, help="Token limit per row [default: the model's, 256 for MiniLM].")
@click.option("--normalize/--no-normalize", default=None,
              help="L2-normalise every stored vector [default: as the model does; yes for MiniLM].")
@_DTYPE
@click.option("--store-dtype", type=click.Choice(STORE_DTYPES), default="float32", show_default=True)
@click.option("--batch-tokens", type=int, default=None,
              help="Token budget per batch (rows x padded length) [default: 2048 on CPU, 16384 on GPU].")
@click.option("--window-rows", type=int, default=None,
              help="Rows per commit window; a crash loses at most one window [default: 4096; for shards of a "
                   "smaller input, rows / shards].")
@click.option("--compression", type=click.Choice(["lzf", "gzip"]), default=None, help="HDF5 compression.")
@_DEVICE
@click.option("--overwrite", is_flag=True, help="Replace an existing store made differently.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a hub model's own Python code to run.")
@click.option("--shard", "shard_spec", help="I/N: embed only the I-th of N contiguous parts, into "
              "OUTPUT's stem + .shard-I-of-N.h5 [default under torchrun or Slurm: the process's rank].")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Reuse vectors of texts embedded before "
              "with the same settings (keyed by content sha256); new vectors are added to it.")
@click.option("--merge", "merge_after", is_flag=True,
              help="Under torchrun: after every rank is done, rank 0 merges the shards into OUTPUT.")
@_QUIET
def extract(input: str, output: str, model: str, pooling: str | None, layers: str, max_length: int | None,
            normalize: bool | None, dtype: str, store_dtype: str, batch_tokens: int | None, window_rows: int | None,
            compression: str | None, device: str, overwrite: bool, trust_remote_code: bool, shard_spec: str | None,
            cache_dir: str | None, merge_after: bool, quiet: bool, **columns) -> None:
    """Embed every row of INPUT into the store OUTPUT (resumable: rerun the same command).

    INPUT is a .csv, .tsv, .jsonl, .txt or .parquet file (.gz allowed) or a bundled
    dataset: sst2:train, sst2:dev, sst2:test.

    \b
    Examples:
      featx extract sst2:dev -o runs/sst2-dev.h5 --pooling mean,cls
      featx extract ../shared/data/sst2/dev.tsv -o dev.h5 --text-column content --label-column label
      featx extract imdb/train.jsonl.gz -o imdb-train.h5 --max-length 256 --id-column id
      featx extract notes.txt -o notes.h5 --model ./my-bert --layers -4: --normalize
    """
    from featx.engine import extract as run_extract
    from featx.shards import device_for_rank, merge_after_barrier, shard_from_env

    shard, local_rank = (_parse_shard(shard_spec), None) if shard_spec else shard_from_env()
    store = run_extract(
        _open(input, columns), output, model=model, pooling=pooling, layers=layers, max_length=max_length,
        normalize=normalize, dtype=dtype, store_dtype=store_dtype, batch_tokens=batch_tokens,
        device=device_for_rank(device, local_rank), window_rows=window_rows, compression=compression,
        overwrite=overwrite, trust_remote_code=trust_remote_code, progress=False if quiet else None, shard=shard,
        cache_dir=cache_dir)
    if merge_after and shard is not None:
        store.close()
        store = merge_after_barrier(output, shard)
        if store is None:
            return
    with store:
        if not quiet:
            from featx.store import summary_line

            click.echo(summary_line(store.info()), err=True)


def _parse_shard(spec: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise FeatxError(f"cannot read --shard {spec!r}: write I/N, e.g. 0/4") from None
    return index, count


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
    from featx.shards import merge_shards
    from featx.store import open_store

    merged = merge_shards(list(shards), output, copy=copy)
    with open_store(merged) as store:
        click.echo(f"{merged}: {len(store):,} rows from {len(shards)} shards"
                   + (" (copied)" if copy else " (virtual datasets over the shards)"), err=True)


@cli.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info(store: str, as_json: bool) -> None:
    """Describe a store: rows, progress, poolings, labels, config, hardware, timings.

    \b
    Example:
      featx info runs/sst2-dev.h5 --json
    """
    from featx.store import format_info, open_store

    with open_store(store, allow_incomplete=True) as opened:
        details = opened.info()
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    click.echo(format_info(details))


@cli.command()
@click.argument("store")
@click.option("-o", "--output", required=True, help="Folder for the heads, results.json and results.md.")
@click.option("--head", "heads", multiple=True,
              help="Head spec, repeatable: KIND or KIND:name=value,...; kinds: logreg, mlp, ridge (closed form, "
                   "alpha swept), knn (cosine); e.g. logreg:C=0.1, mlp:hidden=512,dropout=0.2, knn:n_neighbors=10 "
                   "[default: logreg and mlp].")
@click.option("--grid", type=click.Path(dir_okay=False), help="JSON file with a list of head specs (strings).")
@click.option("--pooling", "poolings", multiple=True, help="Pooling to train on, repeatable [default: all stored].")
@click.option("--val", "val_path", help="Validation store (same extraction settings) for model selection.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Without --val: a stratified fraction of train held out (not trained on) for every "
                   "head's selection and the val column.")
@click.option("--test", "test_path", help="Test store to report on (never used for selection).")
@click.option("--protocol", type=click.Choice(["full", "mteb"]), default="full", show_default=True,
              help="full: train / select on validation / report on test. mteb: few-shot logistic regression, "
                   "k rows per label sampled --experiments times, mean and std on test.")
@click.option("--k", "k_shot", type=int, default=8, show_default=True, help="mteb: rows per label.")
@click.option("--experiments", type=int, default=10, show_default=True, help="mteb: number of samples.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Heads trained in parallel (-1: all cores).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--export", "export_dir", help="Write the best head (by validation accuracy) as a predictor here.")
def train(store: str, output: str, heads: tuple[str, ...], grid: str | None, poolings: tuple[str, ...],
          val_path: str | None, val_fraction: float, test_path: str | None, protocol: str, k_shot: int,
          experiments: int, jobs: int, seed: int, export_dir: str | None) -> None:
    """Train heads on the cached features in STORE and print one comparison table.

    \b
    Examples:
      featx train cache/train.h5 -o heads/ --val cache/dev.h5 --test cache/test.h5
      featx train cache/train.h5 -o heads/ --head logreg:C=0.1 --head logreg:C=1 --head mlp \\
          --pooling mean --pooling cls --jobs 2 --test cache/test.h5 --export model/
      featx train cache/train.h5 -o fewshot/ --protocol mteb --test cache/test.h5
    """
    from pathlib import Path

    from featx.atomic import make_folder
    from featx.heads import DEFAULT_HEADS
    from featx.store import open_store
    from featx.train import HeadSpec, format_table, mteb_protocol, read_head_grid, train_and_save, write_results

    specs = [HeadSpec.parse(text) for text in heads or ()]
    if grid:
        specs += [HeadSpec.parse(text) for text in read_head_grid(grid)]
    specs = specs or [HeadSpec(kind) for kind in DEFAULT_HEADS]
    if not 0 < val_fraction < 1:
        raise FeatxError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    out = Path(output)
    train_store = open_store(store)
    val = open_store(val_path) if val_path else None
    test = open_store(test_path) if test_path else None
    for pooling in poolings:
        train_store.features(pooling)  # a missing pooling fails now, with the list of stored ones
    facts = {"train": store, "val": val_path, "test": test_path, "protocol": protocol, "seed": seed}
    if protocol == "mteb":
        if test is None:
            raise FeatxError("--protocol mteb reports on a test store: pass --test STORE")
        make_folder(out, "results")
        rows = mteb_protocol(train_store, test, list(poolings) or None, k=k_shot, experiments=experiments, seed=seed)
        write_results(out, rows, facts)
        click.echo(format_table(rows))
        return
    run = train_and_save(train_store, specs, out, poolings=list(poolings) or None, val=val, test=test,
                         val_fraction=val_fraction, jobs=jobs, seed=seed, export=export_dir, facts=facts)
    click.echo(format_table(run.rows))
    if run.exported:
        click.echo(f"exported {run.best.name} as a predictor to {run.exported}", err=True)


@cli.command()
@click.argument("head_dir")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(head_dir: str, store: str, as_json: bool) -> None:
    """Evaluate a trained head on a labelled STORE: accuracy, F1, per class, confusion matrix.

    \b
    Example:
      featx evaluate heads/heads/logreg-mean cache/test.h5
    """
    from featx.heads import TrainedHead
    from featx.metrics import format_metrics
    from featx.store import open_store

    head = TrainedHead.load(head_dir)
    with open_store(store) as opened:
        metrics = head.evaluate(opened)
    click.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics))


@cli.command()
@click.argument("model_dir")
@click.argument("input")
@click.option("-o", "--output", help="JSON-lines file to write [default: standard output].")
@_input_options()
@_DEVICE
@_QUIET
def predict(model_dir: str, input: str, output: str | None, device: str, quiet: bool, **columns) -> None:
    """Classify every row of INPUT with a predictor or a fine-tuned checkpoint; one JSON line per row.

    Each line holds the row's id, the predicted label and every class's probability.

    \b
    Example:
      featx predict model/ sst2:test -o predictions.jsonl
    """
    from featx.predictor import load_predictor, write_predictions

    predictor = load_predictor(model_dir, device=device)
    write_predictions(predictor, _open(input, columns), output, progress=False if quiet else None)


@cli.command()
@click.argument("train_input")
@click.option("-o", "--output", required=True, help="Checkpoint folder (best epoch by validation accuracy).")
@click.option("--val", "val_input", help="Validation input, evaluated after every epoch.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--pooling", type=click.Choice(POOLINGS), default="mean", show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True)
@click.option("--train-layers", type=int, help="Partial fine-tuning: train only the top K blocks and the classifier.")
@click.option("--lora-rank", type=int, help="LoRA adapters of this rank (needs pip install 'featx[lora]').")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@_DTYPE
@_input_options("the inputs")
@click.option("--seed", type=int, default=0, show_default=True)
@_DEVICE
@_QUIET
def finetune(train_input: str, output: str, val_input: str | None, model: str, pooling: str, epochs: int, lr: float,
             batch_size: int, max_length: int, train_layers: int | None, lora_rank: int | None,
             max_steps: int | None, dtype: str, seed: int, device: str, quiet: bool, **columns) -> None:
    """Fine-tune the whole backbone (or its top blocks, or LoRA adapters) with a linear classifier.

    \b
    Examples:
      featx finetune sst2:train -o ft/sst2 --val sst2:dev --epochs 1
      featx finetune train.jsonl -o ft/top2 --val dev.jsonl --train-layers 2 --lr 1e-4
      featx predict ft/sst2 sst2:test -o predictions.jsonl
    """
    from featx.finetune import FinetuneConfig, finetune as run_finetune

    config = FinetuneConfig(model=model, pooling=pooling, epochs=epochs, lr=lr, batch_size=batch_size,
                            max_length=max_length, train_layers=train_layers, lora_rank=lora_rank, dtype=dtype,
                            seed=seed, max_steps=max_steps)
    val_source = _open(val_input, columns) if val_input else None
    record = run_finetune(_open(train_input, columns), output, val=val_source, config=config, device=device,
                          progress=False if quiet else None)
    for epoch in record["epochs"]:
        val = f", val accuracy {epoch['val_accuracy']:.4f}" if "val_accuracy" in epoch else ""
        click.echo(f"epoch {epoch['epoch']}: {epoch['train_seconds']:.1f} s{val}")
    click.echo(f"best epoch {record['best_epoch']} saved to {output}", err=True)


@cli.command()
@click.argument("suite_file")
@click.option("-o", "--output", required=True, help="Results folder; a rerun resumes and skips finished rows.")
@click.option("--data", "data_dir", help="Folder that {data} in the suite's paths stands for "
                                         "[default: $FEATX_DATA, else ../shared/data].")
@click.option("--stages", default="extract,heads,mteb,finetune", show_default=True,
              help="Comma list of the stages to run now; the others can follow in a later run.")
def bench(suite_file: str, output: str, data_dir: str | None, stages: str) -> None:
    """Run a benchmark suite: extraction, frozen heads, fine-tuning; write results.json/.md/.csv/.png.

    \b
    Example:
      featx bench benchmarks/suites/sst2_minilm_cpu.toml -o benchmarks/results/sst2_minilm_cpu
    """
    from pathlib import Path

    from featx.bench import load_suite, run_suite, write_report

    from featx.bench.runner import STAGES

    chosen = tuple(stage.strip() for stage in stages.split(","))
    unknown = [stage for stage in chosen if stage not in STAGES]
    if unknown:
        raise FeatxError(f"unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}")
    suite = load_suite(suite_file, data_dir)
    rows = run_suite(suite, output, echo=lambda line: click.echo(line, err=True), stages=chosen)
    document = write_report(output, suite.name, rows, f"featx bench {suite_file} -o {output}")
    click.echo((Path(output) / "results.md").read_text())
    click.echo(f"{len(document['rows'])} rows in {output}/results.json", err=True)


@cli.command()
@click.option("-o", "--output", default="featx-demo", show_default=True, help="Folder for stores, heads, predictor.")
@click.option("--train-rows", type=int, default=8000, show_default=True, help="SST-2 train phrases to use.")
@click.option("--seed", type=int, default=0, show_default=True)
@_DEVICE
def demo(output: str, train_rows: int, seed: int, device: str) -> None:
    """Extract bundled SST-2 with the packaged MiniLM, train two heads, print the results table.

    \b
    Example:
      featx demo -o featx-demo
    """
    from featx.demo import run_demo

    run_demo(output, train_rows=train_rows, seed=seed, device=device, echo=click.echo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2 (130 for Ctrl-C)."""
    # h5py reports errors met while tearing objects down (after a failed write, say) as
    # "Exception ignored" tracebacks; the error that matters has already been raised.
    sys.unraisablehook = _quiet_unraisable
    try:
        # Not cli.main(): on Ctrl-C it prints a blank line of its own, a second line on stderr.
        with cli.make_context("featx", list(sys.argv[1:] if argv is None else argv)) as context:
            result = cli.invoke(context)
    except ParameterError as e:
        _fail(e.for_flag())
    except FeatxError as e:
        _fail(str(e))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except _NO_ARGS_IS_HELP as e:  # a bare `featx` (or group): the help itself, not an error
        click.echo(e.ctx.get_help() if e.ctx else cli.get_help(click.Context(cli, info_name="featx")))
        sys.exit(0)
    except click.ClickException as e:
        _fail(f"{e.format_message()} (see featx --help)", e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        if sys.stderr.isatty():
            click.echo(err=True)  # end the line the terminal's ^C echo started
        click.echo("featx: interrupted; an extraction keeps its committed rows: rerun the same command to "
                   "continue", err=True)
        _exit_now(130)
    except EOFError as e:
        _fail(f"unexpected end of input ({e or 'a file ended early'})")
    except OSError as e:
        # A fault of the machine (disk full, read-only, I/O error) that no library layer named.
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        _fail(f"{describe_os_error(e)}{where}")
    sys.exit(result if isinstance(result, int) else 0)


# click >= 8.2 raises this for a group called without a command; older clicks print help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _exit_now(code: int) -> None:
    """Exit at once, past interpreter shutdown. Every store, head and output is closed by now
    (the `finally` blocks and `with` statements ran while the exception rose). After a Ctrl-C
    during extraction, a normal exit ended the process by SIGINT instead of with `code` in
    about one run in four (the cause lies in interpreter shutdown and was not pinned down);
    tests/faults/test_locks_and_signals.py holds the exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"featx: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _quiet_unraisable(unraisable) -> None:
    import traceback

    frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
    if "h5py" in repr(unraisable.object) or any("h5py" in frame.filename for frame in frames):
        return
    sys.__unraisablehook__(unraisable)
