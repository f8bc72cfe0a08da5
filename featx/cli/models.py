"""The `featx` commands that train and score models: train, evaluate, finetune, bench."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from featx.cli.commands import cli
from featx.cli.options import (
    DEVICE_OPTION,
    DTYPE_OPTION,
    QUIET_OPTION,
    Constrained,
    HeadKindsOption,
    input_options,
    open_input_columns,
    protocol_options,
)
from featx.config import BENCH_STAGES, DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, FINETUNE_POOLINGS
from featx.constraints import DEFAULT_MEMORY_BUDGET, FRACTION, JOBS, MEMORY_BUDGET, NON_NEGATIVE
from featx.errors import FeatxError
from featx.finetune.recipe import RECIPE_CONSTRAINTS as RECIPE
from featx.finetune.recipe import FinetuneConfig

_RECIPE = FinetuneConfig()  # the recipe's defaults, shown by featx finetune --help; declared once, there


@cli.command()
@click.argument("store")
@click.option("-o", "--output", required=True, help="Folder for the heads, results.json and results.md.")
@click.option("--head", "heads", multiple=True, cls=HeadKindsOption)
@click.option("--grid", type=click.Path(exists=True, dir_okay=False),
              help="JSON file with a list of head specs (strings). logreg specs given C (and ridge given alpha) "
                   "that differ only there are fitted together: 1,000 C values take seconds, not minutes.")
@click.option("--pooling", "poolings", multiple=True, help="Pooling to train on, repeatable [default: all stored].")
@click.option("--val", "val_path", type=click.Path(exists=True, dir_okay=False),
              help="Validation store (same extraction settings) for model selection.")
@click.option("--val-fraction", type=Constrained(FRACTION), default=0.1, show_default=True,
              help="Without --val: a stratified fraction of train held out (not trained on) for every "
                   "head's selection and the val column.")
@click.option("--test", "test_path", type=click.Path(exists=True, dir_okay=False),
              help="Test store to report on (never used for selection).")
@click.option("--texts", "train_texts", help="hybrid: the input STORE was extracted from (its texts are checked "
                                           "row by row against the store); read with the input options below.")
@click.option("--val-texts", help="hybrid: the input the --val store was extracted from.")
@click.option("--test-texts", help="hybrid: the input the --test store was extracted from.")
@input_options("the --texts inputs")
@protocol_options()
@click.option("--jobs", type=Constrained(JOBS), default=1, show_default=True, help="Heads trained in parallel (-1: all cores).")
@click.option("--seed", type=Constrained(NON_NEGATIVE), default=0, show_default=True)
@click.option("--memory-budget", type=Constrained(MEMORY_BUDGET), default=DEFAULT_MEMORY_BUDGET, show_default="1G",
              help="The most feature bytes one head holds at once (512M, 4G): over it, logreg, ridge and mlp read "
                   "the store from disk a block at a time; knn and hybrid hold their rows whatever the budget.")
@click.option("--export", "export_dir", help="Write the best head (by validation accuracy) as a predictor here.")
def train(store: str, output: str, heads: tuple[str, ...], grid: str | None, poolings: tuple[str, ...],
          val_path: str | None, val_fraction: float, test_path: str | None, jobs: int, seed: int,
          memory_budget: int, export_dir: str | None, train_texts: str | None, val_texts: str | None, test_texts: str | None,
          **options: Any) -> None:
    """Train heads on the cached features in STORE and print one comparison table.

    \b
    Examples:
      featx train cache/train.h5 -o heads/ --val cache/dev.h5 --test cache/test.h5
      featx train cache/train.h5 -o heads/ --head logreg:C=0.1 --head logreg:C=1 --head mlp \\
          --pooling mean --pooling cls --jobs 2 --test cache/test.h5 --export model/
      featx train cache/train.h5 -o fewshot/ --protocol mteb --task Banking77Classification --test cache/test.h5
      featx train cache/train.h5 -o hybrid/ --head hybrid --texts train.jsonl --val cache/dev.h5 \\
          --val-texts dev.jsonl
    """
    from featx.results import format_table
    from featx.train import TrainingRun, run_training

    protocol = options.pop("protocol")
    mteb = {k: options.pop(k) for k in ("task", "k", "experiments", "seeds")}
    texts = {role: open_input_columns(spec, options) for role, spec in
             (("train", train_texts), ("val", val_texts), ("test", test_texts)) if spec is not None}
    run = run_training(store, output, heads=heads, grid=grid, val=val_path, test=test_path, protocol=protocol,
                       mteb=mteb, export=export_dir, texts=texts, poolings=poolings, val_fraction=val_fraction,
                       jobs=jobs, seed=seed, memory_budget=memory_budget)
    rows = run.rows if isinstance(run, TrainingRun) else run
    click.echo(format_table(rows))
    for row in rows:
        if row.get("warning"):
            click.echo(f"featx: warning: {row['head']}: {row['warning']}", err=True)
    if isinstance(run, TrainingRun) and run.exported:
        click.echo(f"exported {run.best.name} as a predictor to {run.exported}", err=True)


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@input_options("DATA")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--texts", help="A hybrid head on a store: the input DATA was extracted from (read with the input "
                              "options).")
@DEVICE_OPTION
def evaluate(model_dir: str, data: str, as_json: bool, texts: str | None, device: str, **columns: Any) -> None:
    """Score MODEL_DIR on labelled DATA: accuracy, F1, per class, confusion matrix.

    MODEL_DIR is a head folder (DATA: a store made like its training store), a predictor
    folder or a fine-tuned checkpoint (DATA: a labelled input file, read with the input
    options). A class missing from DATA is fine; a label the model never saw is refused.

    \b
    Examples:
      featx evaluate heads/heads/logreg-mean cache/test.h5
      featx evaluate model/ sst2:test
      featx evaluate ft/emotion ../shared/data/emotion/test.jsonl
    """
    from featx.metrics import format_metrics
    from featx.predictor import evaluate_folder

    metrics = evaluate_folder(model_dir, data, device=device, read_input=lambda: open_input_columns(data, columns),
                              texts=open_input_columns(texts, columns) if texts is not None else None)
    click.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics))


@cli.command()
@click.argument("train_input")
@click.option("-o", "--output", required=True,
              help="Checkpoint folder (the best epoch by validation: accuracy, tuned macro-F1 or mean R²).")
@click.option("--val", "val_input", help="Validation input, evaluated after every epoch.")
@click.option("--model", help=f"[default: {DEFAULT_MODEL} for texts, {DEFAULT_IMAGE_MODEL} for images]")
@click.option("--pooling", type=click.Choice(FINETUNE_POOLINGS), default=_RECIPE.pooling, show_default=True,
              help="mean: a text's tokens, an image's feature map or patch tokens; cls for ViT-like image models.")
@click.option("--epochs", type=Constrained(RECIPE["epochs"]), default=_RECIPE.epochs, show_default=True)
@click.option("--lr", type=Constrained(RECIPE["lr"]), default=_RECIPE.lr, show_default=True)
@click.option("--batch-size", type=Constrained(RECIPE["batch_size"]), default=_RECIPE.batch_size, show_default=True)
@click.option("--max-length", type=Constrained(RECIPE["max_length"]), default=_RECIPE.max_length, show_default=True,
              help="Texts only.")
@click.option("--train-layers", type=Constrained(RECIPE["train_layers"]),
              help="Partial fine-tuning: train only the top K blocks and the classifier.")
@click.option("--lora-rank", type=Constrained(RECIPE["lora_rank"]),
              help="LoRA adapters of this rank (needs pip install 'featx[lora]').")
@click.option("--max-steps", type=Constrained(RECIPE["max_steps"]), help="Stop after this many optimizer steps.")
@DTYPE_OPTION
@input_options("the inputs")
@click.option("--seed", type=Constrained(RECIPE["seed"]), default=0, show_default=True)
@DEVICE_OPTION
@QUIET_OPTION
def finetune(train_input: str, output: str, val_input: str | None, model: str | None, pooling: str, epochs: int, lr: float,
             batch_size: int, max_length: int, train_layers: int | None, lora_rank: int | None,
             max_steps: int | None, dtype: str, seed: int, device: str, quiet: bool, **columns: object) -> None:
    """Fine-tune the whole backbone (or its top blocks, or LoRA adapters) with a linear classifier.

    \b
    Examples:
      featx finetune sst2:train -o ft/sst2 --val sst2:dev --epochs 1
      featx finetune train.jsonl -o ft/top2 --val dev.jsonl --train-layers 2 --lr 1e-4
      featx predict ft/sst2 sst2:test -o predictions.jsonl
    """
    from featx.finetune import finetune as run_finetune
    from featx.finetune import summary_lines
    from featx.finetune.recipe import FinetuneConfig
    from featx.modalities import modality_of

    train_source = open_input_columns(train_input, columns)
    modality = modality_of(train_source)
    model = model or modality.default_model
    if model is None:
        raise FeatxError(f"--model is needed: {modality.name} inputs have no default model")
    config = FinetuneConfig(model=model, pooling=pooling, epochs=epochs, lr=lr, batch_size=batch_size,
                            max_length=max_length, train_layers=train_layers, lora_rank=lora_rank, dtype=dtype,
                            seed=seed, max_steps=max_steps)
    val_source = open_input_columns(val_input, columns) if val_input else None
    record = run_finetune(train_source, output, val=val_source, config=config,
                          device=device, progress=False if quiet else None)
    lines = summary_lines(record, output)
    click.echo("\n".join(lines[:-1]))
    click.echo(lines[-1], err=True)


@cli.command()
@click.argument("suite_file")
@click.option("-o", "--output", required=True, help="Results folder; a rerun resumes and skips finished rows.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder that {data} in the suite's paths stands for "
                                         "[default: $FEATX_DATA, else ../shared/data].")
@click.option("--stages", default=",".join(BENCH_STAGES), show_default=True,
              help="Comma list of the stages to run now; the others can follow in a later run.")
def bench(suite_file: str, output: str, data_dir: str | None, stages: str) -> None:
    """Run a benchmark suite: extraction, frozen heads, fine-tuning; write results.json/.md/.csv/.png.

    \b
    Example:
      featx bench benchmarks/suites/sst2_minilm_cpu.toml -o benchmarks/results/sst2_minilm_cpu
    """
    from featx.bench import load_suite, run_suite, write_report
    from featx.bench.report import markdown_report
    from featx.bench.runner import parse_stages

    suite = load_suite(suite_file, data_dir)
    rows = run_suite(suite, output, echo=lambda line: click.echo(line, err=True), stages=parse_stages(stages))
    document = write_report(output, suite.name, rows, f"featx bench {suite_file} -o {output}", suite.anchor)
    click.echo(markdown_report(document))
    click.echo(f"{len(document['rows'])} rows in {output}/results.json", err=True)


@cli.command()
@click.argument("store")
@click.argument("input")
@click.option("-o", "--output", required=True, help="Store file to write (.h5): STORE's vectors, INPUT's labels.")
@input_options()
def relabel(store: str, input: str, output: str, **columns: Any) -> None:
    """Give STORE's vectors other labels, read again from INPUT, the input it was extracted from:
    one cache, every head. The vectors are not copied (virtual datasets over STORE: keep it beside
    OUTPUT); every row's text is checked against STORE's.

    \b
    Example (the sentiment cache of IMDB reviews, as a rating regressor's):
      featx relabel imdb-train.h5 imdb/train.jsonl.gz -o imdb-train-rating.h5 --target rating
    """
    from featx.relabel import relabel_store

    written = relabel_store(store, open_input_columns(input, columns), output)
    from featx.store import open_store

    with open_store(written) as relabelled:
        click.echo(f"{written}: {len(relabelled):,} rows of {store}'s vectors, {relabelled.task} labels "
                   f"({', '.join((relabelled.classes or ())[:6])}{', ...' if len(relabelled.classes or ()) > 6 else ''})",
                   err=True)


@cli.command()
@click.argument("train")
@click.option("--val", help="Validation input [default: 10 % of TRAIN, seeded, as featx train carves it].")
@click.option("--test", required=True, help="Test input: only reported on, never chosen on.")
@click.option("-o", "--output", required=True, help="Folder for the table, plot, stores and the best predictor.")
@click.option("--budget", default="15m", show_default=True, help="Time for the whole run: 900, 900s, 15m or 1h.")
@click.option("--seed", type=Constrained(NON_NEGATIVE), default=0, show_default=True)
@input_options("TRAIN, --val and --test")
def frontier(train: str, val: str | None, test: str, output: str, budget: str, seed: int, **columns: Any) -> None:
    """Which method for which budget, on your own data: TF-IDF, frozen MiniLM, the hybrid head,
    frozen mpnet, cached blocks and the top-2 fine-tune (images: frozen EfficientNet-Lite0 and its
    top-2 fine-tune), in order of cost, within --budget. Prints
    the frontier table (Pareto rows marked), saves its plot and exports the best predictor by
    validation; methods that would overrun the budget are skipped with their estimated seconds.

    \b
    Example:
      featx frontier emotion/train.jsonl --val emotion/validation.jsonl --test emotion/test.jsonl \\
        -o runs/frontier --budget 10m
    """
    from featx.bench.frontier import run_frontier

    sources = {name: open_input_columns(spec, columns) if spec else None
               for name, spec in (("train", train), ("val", val), ("test", test))}
    document = run_frontier(sources["train"], sources["test"], output, val=sources["val"],  # type: ignore[arg-type]
                            budget_s=_seconds(budget), seed=seed, echo=lambda line: click.echo(line, err=True))
    click.echo((Path(output) / "frontier.md").read_text(encoding="utf-8"))
    if not document["plot"]:
        click.echo("featx: warning: no frontier.png: matplotlib is not installed (pip install 'featx[plot]')", err=True)
    if "exported" in document:
        chosen = document["exported"]
        click.echo(f"exported {chosen['method']} (best on validation) to {chosen['folder']}; "
                   f"{document['wall_s']:,.0f} s of {document['budget_s']:,.0f}", err=True)


def _seconds(text: str) -> float:
    """A duration: 900, 900s, 15m or 1h."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise FeatxError(f"--budget {text!r}: give a duration such as 900, 900s, 15m or 1h")
    return seconds
