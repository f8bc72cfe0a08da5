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


def test_the_mteb_seed_spread_shows_progress_and_its_help_states_the_cost(capsys, labelled_stores):
    """The 50-seed spread ran for over 10 minutes on Banking77 with nothing shown."""
    from featx.cli import cli
    from featx.mteb import seed_spread

    train, test = labelled_stores["train"], labelled_stores["test"]
    X, y = train.load("mean")
    X_test, y_test = test.load("mean")
    spread = seed_spread(X, y, X_test, y_test, samples_per_label=2, experiments=2, seeds=range(3), progress=True)
    assert spread["seeds"] == 3
    shown = capsys.readouterr().err
    assert "mteb seed spread" in shown and "3/3" in shown, shown
    seeds_help = next(p.help for p in cli.commands["train"].params if p.name == "seeds")
    assert "costs N times one run" in seeds_help
