"""Ray as the shard scheduler (issue 33), on a local Ray instance of 2 CPUs: the merged store equals a
one-process run bit for bit, a worker killed mid-shard costs at most the window it was embedding, and a
rerun after the driver died embeds only the shards that were not complete."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import featx
from featx.extraction.ray_engine import extract_with_ray
from featx.extraction.runners import WatchedRunner

ray = pytest.importorskip("ray")

ROWS, WINDOW, SHARDS = 96, 8, 4  # 12 windows, 3 a shard


class LoggedRunner(WatchedRunner):
    """The featurizer's own runner, logging one line a window it embeds (pid, rows) to `log`; the first
    worker to reach `kill_at` windows (a marker file decides which) waits for the window before to be
    committed, then dies as a killed node would (SIGKILL), before its window is committed."""

    def __init__(self, log: Path, kill_at: int | None = None, pause_s: float = 0.0) -> None:
        super().__init__()
        self.log, self.kill_at, self.pause_s, self.done = Path(log), kill_at, pause_s, 0

    def after_window(self, rows, seconds):
        time.sleep(self.pause_s)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {rows}\n")
        self.done += 1
        if self.kill_at is not None and self.done == self.kill_at and _claim(self.log.with_suffix(".killed")):
            time.sleep(1.0)  # the window before is committed by now (tens of ms), this one never is
            os.kill(os.getpid(), signal.SIGKILL)


def _claim(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 ** 2, logging_level="ERROR",
             log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import tests/
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray-input") / "in.csv"
    words = ["fine", "dull", "grand", "flat", "bright", "slow"]
    lines = ["text,label"] + [f"{words[i % 6]} film number {i} {'very ' * (i % 5)},{'ab'[i % 2]}" for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _options(tiny_bert_dir):
    return {"model": str(tiny_bert_dir), "pooling": "mean,cls", "dtype": "fp32", "window_rows": WINDOW,
            "progress": False}


def _windows_embedded(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _assert_same_store(a, b):
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        for name in ("ids", "labels", "content_sha256", "features/mean", "features/cls"):
            np.testing.assert_array_equal(x[name][:], y[name][:])


def test_ray_shards_merge_into_the_one_process_store(tmp_path, local_ray, rows, tiny_bert_dir):
    whole = featx.extract(rows, tmp_path / "whole.h5", **_options(tiny_bert_dir))
    merged = extract_with_ray(rows, tmp_path / "ray.h5", shards=SHARDS, **_options(tiny_bert_dir))
    assert len(merged) == ROWS and merged.header.merged_from == [f"ray.shard-{i}-of-{SHARDS}.h5" for i in
                                                                 range(SHARDS)]
    _assert_same_store(merged.path, whole.path)


def test_a_worker_killed_mid_shard_reembeds_at_most_its_window(tmp_path, local_ray, rows, tiny_bert_dir):
    log = tmp_path / "windows.log"
    merged = extract_with_ray(rows, tmp_path / "killed.h5", shards=SHARDS, runner=LoggedRunner(log, kill_at=2),
                              **_options(tiny_bert_dir))
    assert (tmp_path / "windows.killed").exists()  # a worker did die, and its shard was run again
    assert _windows_embedded(log) == ROWS // WINDOW + 1
    _assert_same_store(merged.path, featx.extract(rows, tmp_path / "whole.h5", **_options(tiny_bert_dir)).path)


def test_a_rerun_after_the_driver_died_embeds_only_the_unfinished_shards(tmp_path, local_ray, rows, tiny_bert_dir):
    """The driver (its own local Ray, one worker, windows slowed to 0.3 s) is killed once a shard is complete,
    mid-way through the next; the rerun here embeds the windows not committed, and nothing else."""
    log, out = tmp_path / "windows.log", tmp_path / "out.h5"
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
              "import ray\nimport tests.test_ray_engine as here\nfrom tests.test_ray_engine import LoggedRunner\n"
              "from featx.extraction.ray_engine import extract_with_ray\n"
              "ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024 ** 2, log_to_driver=False)\n"
              "ray.cloudpickle.register_pickle_by_value(here)\n"
              f"extract_with_ray({str(rows)!r}, {str(out)!r}, shards={SHARDS}, runner=LoggedRunner({str(log)!r}, pause_s=0.3),"
              f" **{_options(tiny_bert_dir)!r})\n")
    driver = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _complete_shards(out) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        assert _complete_shards(out), "no shard was completed by the driver"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, and the local Ray it started
        driver.wait()
    time.sleep(2)  # its workers go with it (Ray kills a dead driver's tasks)
    complete = _complete_shards(out)
    before = _windows_embedded(log)
    committed = sum(_committed_windows(out, i) for i in range(SHARDS))
    merged = extract_with_ray(rows, out, shards=SHARDS, runner=LoggedRunner(log), **_options(tiny_bert_dir))
    assert 1 <= len(complete) < SHARDS and committed < ROWS // WINDOW
    assert _windows_embedded(log) - before == ROWS // WINDOW - committed
    _assert_same_store(merged.path, featx.extract(rows, tmp_path / "whole.h5", **_options(tiny_bert_dir)).path)


def _complete_shards(out: Path) -> list[int]:
    return [i for i in range(SHARDS) if _committed_windows(out, i) and _is_complete(out, i)]


def _is_complete(out: Path, index: int) -> bool:
    try:
        with h5py.File(out.with_name(f"{out.stem}.shard-{index}-of-{SHARDS}.h5"), "r") as f:
            return bool(f.attrs["complete"])
    except (OSError, KeyError):
        return False


def _committed_windows(out: Path, index: int) -> int:
    try:
        with h5py.File(out.with_name(f"{out.stem}.shard-{index}-of-{SHARDS}.h5"), "r") as f:
            return -(-int(f.attrs["n_done"]) // WINDOW)
    except (OSError, KeyError):
        return 0


def test_featx_extract_engine_ray_writes_the_merged_store(tmp_path, local_ray, rows, tiny_bert_dir, cli):
    out = tmp_path / "cli.h5"
    common = [rows, "--model", tiny_bert_dir, "--pooling", "mean,cls", "--dtype", "fp32", "--window-rows", WINDOW]
    result = cli("extract", *common, "-o", out, "--engine", "ray", "--shards", 3)
    assert result.code == 0, result.err
    assert f"{ROWS} rows" in result.err
    _assert_same_store(out, featx.extract(rows, tmp_path / "whole.h5", **_options(tiny_bert_dir)).path)
    for wrong, flag in ((["--engine", "ray", "--shard", "0/2"], "--shard"), (["--shards", 2], "--shards"),
                        (["--engine", "ray", "--merge"], "--merge")):
        result = cli("extract", *common, "-o", tmp_path / "no.h5", *wrong)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and flag in result.err, result.err
