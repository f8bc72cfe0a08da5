"""The hybrid sweep's economies: Newton fits along a C path that carry their products over, and the
weights climbed upwards rather than every weight's path fitted."""
import io

import numpy as np
import pytest
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from featx.heads import HybridHead, TextVectors
from featx.heads.tfidf import TFIDF_PARAMS


def _design(n=300, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)]
    texts = [" ".join(rng.choice(words, size=10)) for _ in range(n)]
    sparse = TfidfVectorizer(**TFIDF_PARAMS).fit_transform(texts)
    dense = rng.normal(size=(n, 6))
    y = (np.asarray(sparse[:, :3].sum(1)).ravel() + dense[:, 0] + rng.normal(size=n) > 0.8).astype(np.int64)
    return [sparse, dense], (y if n_classes == 2 else rng.integers(0, n_classes, n))


def _counting(monkeypatch):
    """Counts of the passes over the rows: scores (X W), gradients (X^T R) and Hessian diagonals."""
    from featx.heads.logistic_columns import Columns

    counts = {"scores": 0, "gradient": 0, "diagonal": 0}
    for name in counts:
        method = getattr(Columns, name)

        def counted(self, *args, _method=method, _name=name, **kwargs):
            counts[_name] += 1
            return _method(self, *args, **kwargs)
        monkeypatch.setattr(Columns, name, counted)
    return counts


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_newton_path_fits_as_warm_started_fits_do_and_its_trials_cost_no_pass(n_classes, monkeypatch):
    """Along a C path, each fit starts from the last one's optimum with its scores and loss gradient (which
    does not depend on C) carried over, and the Armijo trials take their scores from the products the
    conjugate gradients made: one pass of X W a fit from zero, and one a Hessian product. Before, every trial
    and every warm start made its own."""
    from featx.heads.logistic_columns import Columns, class_probabilities
    from featx.heads.logistic_newton import NewtonPath, fit_softmax_newton

    blocks, y = _design(n_classes=n_classes)
    columns = Columns(blocks, threads=2)
    counts = _counting(monkeypatch)
    path = NewtonPath.softmax(columns, y, n_classes, precondition=True)
    along = [path.fit(C) for C in (0.1, 1.0, 10.0)]
    # the gradients: the start's, one at each Newton step's new point (as many as diagonals) and one a Hessian
    # product; the passes of X W: the start's and one a Hessian product, none for a trial or a warm start
    assert counts["scores"] == counts["gradient"] - counts["diagonal"]
    monkeypatch.undo()
    start = None
    for C, W in zip((0.1, 1.0, 10.0), along):  # the same fits, to where the gradient tolerance stops them
        start = fit_softmax_newton(columns, y, n_classes, C, start, precondition=True)
        np.testing.assert_allclose(class_probabilities(columns, W), class_probabilities(columns, start), atol=1e-4)


def test_a_newton_fit_whose_start_meets_the_tolerance_costs_no_pass(monkeypatch):
    """A path's next C whose start already meets the gradient tolerance (the large Cs of IMDB's paths)
    costs nothing: the loss gradient at the start was made by the last fit's final check."""
    from featx.heads.logistic_columns import Columns
    from featx.heads.logistic_newton import NewtonPath

    blocks, y = _design()
    path = NewtonPath.softmax(Columns(blocks), y, 2)
    W = path.fit(1.0).copy()
    counts = _counting(monkeypatch)
    np.testing.assert_array_equal(path.fit(1.0), W)
    assert counts == {"scores": 0, "gradient": 0, "diagonal": 0}


@pytest.mark.parametrize(("bests", "fitted"), [
    ({0.25: 0.9, 0.5: 0.8, 1.0: 0.7, 2.0: 0.6, 4.0: 0.5}, [[0.25, 0.5]]),  # a fall at once
    ({0.25: 0.7, 0.5: 0.8, 1.0: 0.75, 2.0: 0.9, 4.0: 0.95}, [[0.25, 0.5], [1.0, 2.0]]),  # a rise past a fall: not seen
    ({0.25: 0.5, 0.5: 0.6, 1.0: 0.7, 2.0: 0.8, 4.0: 0.75}, [[0.25, 0.5], [1.0, 2.0], [4.0]]),
    ({0.25: 0.5, 0.5: 0.5, 1.0: 0.7, 2.0: 0.7, 4.0: 0.9}, [[0.25, 0.5], [1.0, 2.0], [4.0]]),  # ties go on
    ({4.0: 0.6, 0.25: 0.5, 1.0: 0.7}, [[0.25, 1.0], [4.0]]),  # in the weights' order, not the grid's
    ({3.0: 0.5}, [[3.0]]),
])
def test_the_weights_are_climbed_upwards_two_at_a_time_until_a_path_falls(bests, fitted):
    from featx.heads.hybrid_sweep import search_weights

    calls = []

    def fit_paths(weights):
        calls.append(weights)
        return [bests[w] for w in weights]
    search_weights(tuple(bests), fit_paths, "climb")
    assert calls == fitted
    calls.clear()
    search_weights(tuple(bests), fit_paths, "grid")
    assert calls == [sorted(bests, reverse=True)]  # every weight, the larger (longer) paths first


def _rows(rng, n, words=300):
    y = rng.integers(0, 2, n)
    shown = np.where(rng.random(n) < 0.25, 1 - y, y)
    vectors = rng.normal(size=(n, 16)) + 0.4 * y[:, None]
    texts = [" ".join([("good", "bad")[label], *rng.choice([f"w{i}" for i in range(words)], size=12)])
             for label in shown]
    return TextVectors(texts, vectors.astype(np.float32)), y


@pytest.mark.parametrize("newton", [True, False])
@pytest.mark.parametrize("seed", [12, 6])  # the bests' peak at 0.25 (a fall at once), at 1 (falls at 2)
def test_the_climbed_sweep_keeps_the_full_grids_points_and_choice(seed, newton, monkeypatch):
    """The climb fits only the weights it reaches; each point it keeps is the grid's (every weight's path
    fitted), and where the weights' bests have one peak, its choice is the grid's."""
    from featx.heads import hybrid_sweep

    if not newton:
        monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)
    rng = np.random.default_rng(seed)
    (X, y), (X_val, y_val) = _rows(rng, 400), _rows(rng, 300)
    weights, Cs = (0.25, 0.5, 1.0, 2.0, 4.0), (0.01, 0.1, 1.0, 10.0)
    climbed = HybridHead(weights=weights, Cs=Cs).fit(X, y, X_val, y_val)
    grid = HybridHead(weights=weights, Cs=Cs, weight_search="grid").fit(X, y, X_val, y_val)
    assert {p["weight"] for p in grid.curve_} == set(weights)
    kept = {p["weight"] for p in climbed.curve_}
    assert len(kept) < len(weights)
    assert climbed.curve_ == [p for p in grid.curve_ if p["weight"] in kept]
    bests = [max(p["score"] for p in grid.curve_ if p["weight"] == w) for w in weights]
    peak = int(np.argmax(bests))
    assert all(np.diff(bests[:peak + 1]) >= 0) and all(np.diff(bests[peak:]) <= 0)  # one peak here
    assert (climbed.weight_, climbed.C_) == (grid.weight_, grid.C_)


def test_a_multi_label_sweep_climbs_the_weights_too():
    """Multi-label heads climb the weights as single-label ones do (macro-F1 a path's score)."""
    rng = np.random.default_rng(1)
    (X, y), (X_val, y_val) = _rows(rng, 300), _rows(rng, 200)
    Y, Y_val = np.stack([y, 1 - y], 1), np.stack([y_val, 1 - y_val], 1)
    head = HybridHead(weights=(0.25, 0.5, 1.0, 2.0, 4.0), Cs=(0.1, 1.0)).fit(X, Y, X_val, Y_val)
    assert head.task_ == "multi"
    fitted = [p["weight"] for p in head.curve_]
    assert fitted == sorted(fitted, key=(0.25, 0.5, 1.0, 2.0, 4.0).index)  # in the grid's order
    assert {0.25, 0.5} <= set(fitted) and len(set(fitted)) < 5
    assert scipy.sparse.issparse(head._new_design(X)[0])


@pytest.mark.parametrize("multi", [False, True])
def test_the_sweeps_bar_ends_full_when_the_climb_skips_weights(multi, monkeypatch):
    """The weights the climb does not fit are counted as done, so the bar ends at its total, not short of it;
    a weight given twice is one path."""
    from tqdm import tqdm

    from featx.heads import hybrid, hybrid_sweep

    bars = []

    def recorded(total, desc, **kwargs):
        bar = tqdm(total=total, desc=desc, file=io.StringIO())
        bars.append(bar)
        return bar
    monkeypatch.setattr(hybrid_sweep, "progress_bar", recorded)
    monkeypatch.setattr(hybrid, "progress_bar", recorded)
    rng = np.random.default_rng(12)
    (X, y), (X_val, y_val) = _rows(rng, 400), _rows(rng, 300)
    Y, Y_val = (np.stack([y, 1 - y], 1), np.stack([y_val, 1 - y_val], 1)) if multi else (y, y_val)
    Cs = (0.01, 0.1, 1.0, 10.0)
    head = HybridHead(weights=(0.25, 0.25, 0.5, 1.0, 2.0, 4.0), Cs=Cs).fit(X, Y, X_val, Y_val)
    assert len({p["weight"] for p in head.curve_}) < 5
    (bar,) = bars
    assert bar.total == 5 * len(Cs) and bar.n == bar.total
