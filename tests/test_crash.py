"""Crash torture: SIGKILL at random moments, resume each time, lose and duplicate nothing."""
import random
import signal
import subprocess
import time

import numpy as np

import featx
from tests.conftest import tiny_extract_command, write_lines


def test_twenty_random_sigkills_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_bert_dir):
    lines = [f"row {i}: " + "word " * (i % 23) for i in range(2400)]
    path = write_lines(tmp_path / "in.txt", lines)
    out = tmp_path / "s.h5"
    command, env = tiny_extract_command(path, out, tiny_bert_dir, "mean,cls")
    rng = random.Random(0)
    kills = 0
    for _ in range(20):
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        while not out.exists() and process.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.8))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read().decode()
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert kills >= 15, f"only {kills} kills landed before the run finished: make the input longer"
    reference = featx.extract(path, tmp_path / "ref.h5", model=str(tiny_bert_dir), pooling="mean,cls",
                              dtype="fp32", window_rows=8, batch_tokens=64, progress=False)
    with featx.open_store(out) as resumed, reference:
        assert len(resumed) == len(lines)
        assert resumed.ids.tolist() == list(range(len(lines)))  # no row lost, none twice
        assert np.array_equal(resumed.content_sha256, reference.content_sha256)
        for name in ("mean", "cls"):
            np.testing.assert_allclose(resumed.load(name)[0], reference.load(name)[0], atol=1e-5)
