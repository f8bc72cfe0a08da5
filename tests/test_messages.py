"""Messages a user can act on (issue 30): an edge-of-grid warning names the parameter, the list
syntax and a wider grid to try, is not given where nothing lies past the edge (k below 1) or
where validation was flat there, and following it never brings the opposite warning; run
folders have readable names for list-valued parameters."""
import re

import numpy as np
import pytest

from featx.heads import LogRegHead
from featx.heads.base import edge_warning
from featx.heads.hybrid import HybridHead, TextVectors
from featx.heads.knn import KNNHead
from featx.heads.ridge import RidgeHead
from featx.train import HeadSpec, parse_head_spec


def _overlapping(seed, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 20))
    X[:, 0] += 2 * y - 1
    return X, y


def _suggested(warning):
    return re.search(r'--head "([^"]+)"', warning).group(1)


def test_an_edge_warning_names_the_grid_its_syntax_and_a_wider_grid():
    X, y = _overlapping(0)
    X_val, y_val = _overlapping(1)
    head = LogRegHead(Cs=(1e-5, 1e-4, 1e-3)).fit(X, y, X_val, y_val)
    assert head.C_ == 1e-3  # validation still rising at the largest C
    warning = head.selection_warning()
    assert warning.startswith("C=0.001 is the largest value of its grid (Cs=1e-05|0.0001|0.001)")
    assert "the best may be larger" in warning
    kind, params = parse_head_spec(_suggested(warning))  # the suggestion is a spec featx takes as it is
    assert kind == "logreg" and params["Cs"] == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@pytest.mark.parametrize("make, grid_name", [
    (lambda grid: LogRegHead(Cs=grid), "Cs"), (lambda grid: RidgeHead(alphas=grid), "alphas")])
def test_following_the_suggestion_never_brings_the_opposite_warning(make, grid_name):
    """Widened below 0.25 by hand, the hybrid chose 0.25 again, then warned that it was the largest:
    the suggestion keeps every value and adds two steps past the edge, so the old edge is inside."""
    X, y = _overlapping(0)
    X_val, y_val = _overlapping(1)
    grid = (1e-3, 1e-2) if grid_name == "Cs" else (1e3, 1e4)
    seen = []
    for _ in range(4):
        head = make(grid).fit(X, y, X_val, y_val)
        warning = head.selection_warning()
        if warning is None:
            break
        seen.append("larger" if "may be larger" in warning else "smaller")
        grid = parse_head_spec(_suggested(warning))[1][grid_name]
    assert len(set(seen)) <= 1, seen  # never first 'smaller', then 'larger' (or the reverse)


def test_k_1_has_nothing_below_it_so_no_edge_warning():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 16)), rng.integers(0, 3, 300)
    X_val, y_val = X[:100] + 1e-3 * rng.normal(size=(100, 16)), y[:100]  # each val row's own train row decides
    head = KNNHead().fit(X, y, X_val, y_val)
    assert head.k_ == 1 and head.selection_warning() is None


def test_a_flat_validation_curve_at_the_edge_gives_no_warning():
    curve = [{"C": 0.1, "score": 0.9}, {"C": 1.0, "score": 0.9}]
    assert edge_warning("C", 1.0, (0.1, 1.0), curve, kind="logreg", grid_name="Cs") is None
    rising = [{"C": 0.1, "score": 0.8}, {"C": 1.0, "score": 0.9}]
    assert "logreg:Cs=0.1|1|10|100" in edge_warning("C", 1.0, (0.1, 1.0), rising, kind="logreg", grid_name="Cs")


def test_the_hybrid_weight_warning_names_weights():
    rng = np.random.default_rng(0)
    texts = [f"word{rng.integers(0, 50)} word{rng.integers(0, 50)}" for _ in range(300)]
    X, y = _overlapping(0, 300)
    head = HybridHead(Cs=(1.0,), weights=(0.01, 0.02, 0.04, 0.08)).fit(TextVectors(texts, X), y)
    warning = head.selection_warning()  # the vectors carry the signal: the largest weight wins
    assert warning.startswith("weight=0.08 is the largest value of its grid (weights=0.01|0.02|0.04|0.08)")
    assert warning.endswith('--head "hybrid:weights=0.01|0.02|0.04|0.08|0.16|0.32"')


def test_run_folders_of_list_valued_parameters_have_readable_names():
    assert HeadSpec("hybrid", {"weights": (0.03, 0.06, 0.125, 0.25)}).label == "hybrid-weights0.03_0.06_0.125_0.25"
    assert HeadSpec("logreg", {"C": 0.1}).label == "logreg-C0.1"
    assert HeadSpec.parse("logreg:C=10").label == "logreg-C10"


def _on_a_terminal(args, timeout=300):
    """Run `featx ARGS` with stderr on a pseudo-terminal (as a user's shell has it); what it printed there."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    child = subprocess.Popen([sys.executable, "-m", "featx", *map(str, args)], stderr=follower,
                             stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    child.wait(timeout=timeout)
    os.close(leader)
    return child.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("head, unit", [("blocks:epochs=2", "step"), ("mlp:max_epochs=3", "epoch"),
                                        ("hybrid:Cs=0.1|1", "fit")])
def test_a_head_fit_shows_progress_on_a_terminal(tmp_path, tiny_backbone, head, unit):
    """A blocks:k=2 head printed nothing for 17 minutes; a hybrid head on long posts for 18.7."""
    import featx
    from tests.conftest import write_lines

    rng = np.random.default_rng(0)
    words = {"pos": ["great", "lovely", "fine"], "neg": ["awful", "dull", "bad"]}
    lines = ["text,label"] + [f"{' '.join(rng.choice(words[lab], 4))} film,{lab}" for lab in ["pos", "neg"] * 40]
    source = write_lines(tmp_path / "in.csv", lines)
    featx.extract(source, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", cache_layer=1, progress=False).close()
    args = ["train", tmp_path / "s.h5", "-o", tmp_path / "runs", "--head", head]
    if head.startswith("hybrid"):
        args += ["--texts", source]
    code, shown = _on_a_terminal(args)
    kind = head.split(":")[0]
    assert code == 0, shown
    assert f"{kind} head" in shown and (f"{unit}/s" in shown or f"s/{unit}" in shown), shown


def test_carved_validation_with_planted_duplicates_warns_with_the_fix(tmp_path, tiny_backbone, cli):
    """Posts that quote each other straddled a random cut: validation ran 6-11 points above test
    and kNN picked k=1, with no word said."""
    import json

    import featx
    from tests.conftest import write_lines

    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocabulary, 12)) for _ in range(160)]
    labels = ["pos" if i % 2 else "neg" for i in range(160)]
    lines = ["text,label"] + [f"{t},{lab}" for t, lab in zip(texts, labels)]
    clean = write_lines(tmp_path / "clean.csv", lines)
    planted = write_lines(tmp_path / "planted.csv", lines + lines[1:81])  # half the rows twice
    for name, source in (("clean", clean), ("planted", planted)):
        featx.extract(source, tmp_path / f"{name}.h5", model=tiny_backbone, dtype="fp32", progress=False).close()
        result = cli("train", tmp_path / f"{name}.h5", "-o", tmp_path / name, "--head", "logreg",
                     "--val-fraction", "0.25")
        assert result.code == 0, result.err
        head = json.loads((tmp_path / name / "heads" / "logreg-mean" / "head.json").read_text())
        twins = head["metrics"]["val"]["twins_in_train"]
        if name == "clean":
            assert twins["exact"] == 0 and "twin" not in result.err
        else:
            assert twins["exact"] >= 5
            (line,) = [x for x in result.err.splitlines() if "twin" in x]
            assert line.startswith("featx: warning: ") and "--val STORE" in line and "exact duplicates" in line
