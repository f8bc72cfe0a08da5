"""`featx bench`: extraction, heads and fine-tuning on one dataset, one record per row.

Every row runs in a fresh child process, so its wall time and peak RSS are its own. The children
are forked from one server that imported torch and the rows' modules once (multiprocessing's
forkserver), so a row no longer pays about 4 s of imports; each still runs under the caller's
environment and working folder as they are when it starts (tests/test_bench.py: 282 -> 103 s).
Each finished row is written to ``RESULTS_DIR/rows/<id>.json`` at once; a rerun
skips finished rows, so an interrupted suite resumes where it stopped.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featx._version import __version__
from featx.atomic import child_path, make_folder, utc_stamp, write_text
from featx.bench.rows import blocks_row, extract_row, finetune_row, head_row, hybrid_row, mteb_row, tfidf_row
from featx.bench.suite import Suite
from featx.config import BENCH_STAGES
from featx.errors import ParameterError
from featx.hardware import peak_memory_mb

if TYPE_CHECKING:
    pass

STAGES = BENCH_STAGES  # declared with the CLI's other choices (featx.config), so --stages is not a copy


def parse_stages(text: str) -> tuple[str, ...]:
    """``extract,heads`` -> the stages to run now; an unknown name is refused."""
    chosen = tuple(stage.strip() for stage in text.split(","))
    unknown = [stage for stage in chosen if stage not in STAGES]
    if unknown:
        raise ParameterError("stages", f"has an unknown stage {unknown[0]!r}: choose from {', '.join(STAGES)}")
    return chosen


def run_suite(suite: Suite, out: str | Path, echo: Callable[[str], None] = print,
              stages: tuple[str, ...] = STAGES) -> list[dict[str, Any]]:
    """Run every row of `suite` (in the given stages) not yet in `out`; returns all rows, old and new.

    Heads and the few-shot rows need the extraction rows' stores; fine-tuning needs none.
    """
    out = Path(out)
    for pooling in suite.poolings:  # every name from the suite file is checked before anything runs
        for spec in suite.heads:
            child_path(out / "rows", _head_row_id(spec, pooling), "benchmark row")
    for name in suite.finetune:
        child_path(out / "checkpoints", name, "fine-tuning variant")
    make_folder(out / "rows", "results")
    splits = ("train", "test") if suite.val is None else ("train", "val", "test")
    stores = {split: out / "stores" / f"{split}.h5" for split in splits}
    store_paths = {k: str(v) for k, v in stores.items()}
    if "extract" in stages or "heads" in stages or "mteb" in stages or (suite.hybrid is not None and "hybrid" in stages):
        for split in splits:
            _row(out, f"extract-{split}", echo, extract_row, suite, split, stores[split])
            if not stores[split].exists():  # a row kept from an earlier run; stores are not committed
                echo(f"extract-{split}: its store is not here; extracting it again (the row is kept)")
                _in_child(extract_row, suite, split, stores[split])
    for pooling in suite.poolings:
        if "heads" in stages:
            for spec in suite.heads:
                _row(out, _head_row_id(spec, pooling), echo, head_row, suite, spec, pooling, store_paths)
        if suite.mteb and "mteb" in stages:
            _row(out, f"mteb-{pooling}", echo, mteb_row, suite, pooling, store_paths)
        if suite.hybrid is not None and "hybrid" in stages:
            _row(out, f"hybrid-logreg-{pooling}", echo, hybrid_row, suite, pooling, store_paths)
    if suite.tfidf is not None and "tfidf" in stages:
        _row(out, "tfidf-logreg", echo, tfidf_row, suite)
    if suite.blocks is not None and "blocks" in stages:
        state_stores = {split: out / "stores" / f"states-{split}.h5" for split in splits}
        for split in splits:
            _row(out, f"extract-states-{split}", echo, extract_row, suite, split, state_stores[split], True)
            if not state_stores[split].exists():
                echo(f"extract-states-{split}: its store is not here; extracting it again (the row is kept)")
                _in_child(extract_row, suite, split, state_stores[split], True)
        for spec in suite.blocks.get("specs", ["blocks"]):
            _row(out, _head_row_id(spec, "states"), echo, blocks_row, suite, spec,
                 {k: str(v) for k, v in state_stores.items()})
    if "finetune" in stages:
        for name, params in suite.finetune.items():
            checkpoint = child_path(out / "checkpoints", name, "fine-tuning variant")
            _row(out, f"finetune-{name}", echo, finetune_row, suite, name, params, str(checkpoint))
    return load_rows(out)


def _head_row_id(spec: str, pooling: str) -> str:
    return f"head-{spec}-{pooling}".replace(":", "_").replace("=", "").replace(",", "_").replace("|", "_")


def load_rows(out: Path) -> list[dict[str, Any]]:
    """All finished rows of a results folder, in the order they were run."""
    rows = [json.loads(p.read_text()) for p in (Path(out) / "rows").glob("*.json")]
    return sorted(rows, key=lambda r: r["finished_at"])


def _row(out: Path, row_id: str, echo: Callable[[str], None], fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    path = child_path(out / "rows", f"{row_id}.json", "benchmark row")
    if path.exists():
        echo(f"{row_id}: done earlier, kept")
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    echo(f"{row_id}: running ...")
    t0 = time.perf_counter()
    row, peak_rss_mb = _in_child(fn, *args)
    row.update(id=row_id, peak_rss_mb=round(peak_rss_mb, 1), wall_seconds=round(time.perf_counter() - t0, 2),
               featx_version=__version__, git_commit=git_commit(),
               finished_at=utc_stamp())
    write_text(path, json.dumps(row, indent=2) + "\n", "benchmark row")
    echo(f"{row_id}: {_summary(row)}")
    return row


def _summary(row: dict[str, Any]) -> str:
    if row.get("score") is not None:
        return f"{row['metric']} {row['score']:.4f}, {row['seconds']['total']:.1f} s"
    return f"{row['seconds']['total']:.1f} s"


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> tuple[dict[str, Any], float]:
    """`fn(*args)` in a fresh process, with that process's peak RSS. The process is let to exit
    on its own (close + join): terminated, it never ran its finalizers, and the semaphores it
    had made (tqdm's lock, joblib's) were reported as leaked, about one warning a stage.

    The process is forked from a server that imported the rows' modules once (`_children`) and
    has run nothing else, so a row does not pay torch's import again: a spawned child took
    about 4 s to start each row."""
    pool = _children().Pool(1)
    try:
        result: tuple[dict[str, Any], float] = pool.apply(_measured, (dict(os.environ), os.getcwd(), fn, *args))
        pool.close()
        pool.join()
        return result
    finally:
        pool.terminate()  # after an error or a Ctrl-C; a no-op once joined


@functools.cache
def _children() -> Any:
    """The multiprocessing context rows run in: forkserver, its server importing featx.bench.rows
    (torch, numpy, scikit-learn's base) before it forks; spawn where fork does not exist."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["featx.bench.rows", "torch", "sklearn.linear_model"])
    return context


def _measured(environment: dict[str, str], folder: str, fn: Callable[..., dict[str, Any]],
              *args: Any) -> tuple[dict[str, Any], float]:
    """`fn(*args)` and this process's peak RSS, under the caller's environment and working folder
    as they are now (the fork server kept those it started with)."""
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(folder)
    row = fn(*args)
    return row, peak_memory_mb() or 0.0


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
