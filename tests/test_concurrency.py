"""A second writer is refused; readers opened during writing see a consistent prefix."""
import subprocess
import time

import numpy as np
import pytest

import featx
from featx.modalities.text import make_config
from featx.store import StorePlan, StoreWriter
from tests.conftest import run_cli, tiny_extract_command, write_lines


def test_second_writer_is_refused_with_one_line(capsys, tmp_path, tiny_backbone, tiny_bert_dir):
    path = write_lines(tmp_path / "in.txt", ["one", "two", "three"])
    config = make_config(tiny_backbone, dtype="fp32")
    plan = StorePlan(config=config, input_json="{}", input_sha256="0" * 64, input_rows=3, dim=32, classes=None,
                     id_kind="int", window_rows=8, hardware={})
    first = StoreWriter.open(tmp_path / "s.h5", plan)
    try:
        code, _, err = run_cli(capsys, "extract", str(path), "-o", str(tmp_path / "s.h5"),
                               "--model", str(tiny_bert_dir), "--overwrite", "-q")
        assert code == 2 and err.count("\n") == 1 and "being written by another process" in err
    finally:
        first.close()
    assert (tmp_path / "s.h5.lock").exists()  # never removed: removing it opens a race (tests/faults)
    code, _, _ = run_cli(capsys, "extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir),
                         "--overwrite", "-q")
    assert code == 0  # the lock went with the first writer


def test_readers_during_writing_see_only_committed_windows(tmp_path, tiny_bert_dir):
    lines = [f"row {i}: " + "word " * (i % 31) for i in range(40_000)]
    path = write_lines(tmp_path / "in.txt", lines)
    out = tmp_path / "s.h5"
    command, env = tiny_extract_command(path, out, tiny_bert_dir, "mean")
    writer = subprocess.Popen(command, env=env)
    snapshots = []
    try:
        deadline = time.time() + 120
        while len(snapshots) < 8 and time.time() < deadline and writer.poll() is None:
            if out.exists():
                try:
                    with featx.open_store(out, allow_incomplete=True) as store:
                        snapshots.append((store.n_done, store.load("mean")[0].copy(), store.ids.copy()))
                except featx.FeatxError:
                    pass  # still being laid out
            time.sleep(0.1)
    finally:
        writer.kill()
        writer.wait()
    done = [n for n, _, _ in snapshots]
    if len(snapshots) < 3 or not any(0 < n < len(lines) for n in done):
        pytest.fail(f"reads did not land while the writer ran: {done}")
    assert done == sorted(done) and all(n % 8 == 0 for n in done)  # whole windows only
    prefix = write_lines(tmp_path / "prefix.txt", lines[:max(done)])
    with featx.extract(prefix, tmp_path / "ref.h5", model=str(tiny_bert_dir), pooling="mean", dtype="fp32",
                       window_rows=8, batch_tokens=64, progress=False) as reference:
        full = reference.load("mean")[0]
    for n_done, features, ids in snapshots:
        assert features.shape == (n_done, 32) and ids.tolist() == list(range(n_done))
        np.testing.assert_allclose(features, full[:n_done], atol=1e-5)
