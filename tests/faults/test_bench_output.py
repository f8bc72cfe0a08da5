"""`featx bench` says what it did and nothing else: no warnings from the stage processes."""
from __future__ import annotations

from tests.faults.conftest import run_subprocess


def test_a_successful_bench_prints_no_resource_tracker_warnings(tmp_path, tiny_bert_dir, toy_inputs):
    """Each stage's process was terminated, never exiting on its own, and the semaphores it made were
    reported as leaked: about one resource_tracker warning a stage on a run that succeeded."""
    suite = tmp_path / "toy.toml"
    suite.write_text(f"""
name = "toy_tiny_cpu"
model = "{tiny_bert_dir}"
dtype = "fp32"
[data]
train = "{toy_inputs['train']}"
val = "{toy_inputs['dev']}"
test = "{toy_inputs['dev']}"
[extract]
max_length = 16
[heads]
specs = ["logreg"]
""")
    result = run_subprocess("bench", suite, "-o", tmp_path / "results", "--stages", "extract,heads")
    assert result.code == 0, result.err[-2000:]
    assert "resource_tracker" not in result.err and "Warning" not in result.err, result.err[-2000:]
    assert "logreg" in result.out and "rows in" in result.err
