"""Ridge's closed form from row blocks (issue 33, heads that stream): the solver reads X a block at a
time, never holding a float64 copy of it, gives StandardScaler's moments and the in-memory fit's
coefficients, and reads a store's on-disk features as they are."""
import tracemalloc

import numpy as np
from sklearn.preprocessing import StandardScaler

import featx
from featx.heads.ridge import SOLVER_BLOCK_ROWS, _RidgeSolver


def _rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d) + rng.normal(size=d) * 5).astype(np.float32)
    X[:, 3] = 2.5  # a constant column: left unscaled, as StandardScaler leaves it
    return X


def test_the_blockwise_solver_is_the_in_memory_closed_form():
    X, targets = _rows(3 * SOLVER_BLOCK_ROWS + 17, 24), np.random.default_rng(1).normal(size=(3 * SOLVER_BLOCK_ROWS + 17, 3))
    solver = _RidgeSolver(X, targets)
    scaler = StandardScaler().fit(X.astype(np.float64))
    np.testing.assert_allclose(solver.mean, scaler.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(solver.scale, scaler.scale_, rtol=1e-12)
    Xs = scaler.transform(X.astype(np.float64))
    for alpha in (1e-2, 1.0, 1e3):
        expected = np.linalg.solve(Xs.T @ Xs + alpha * np.eye(X.shape[1]), Xs.T @ (targets - targets.mean(0)))
        np.testing.assert_allclose(solver.coefficients(alpha)[0], expected.T, rtol=1e-8, atol=1e-10)


def test_its_memory_is_one_block_not_a_float64_copy_of_the_rows():
    """It held X in float64 twice over (StandardScaler's copy and the standardised rows): 3x X's
    float32 bytes at least. Now the peak stays under X's own float32 size."""
    X, targets = _rows(120_000, 64), np.zeros((120_000, 2))
    tracemalloc.start()
    try:
        _RidgeSolver(X, targets)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes, (peak, X.nbytes)


def test_it_reads_a_stores_features_on_disk(labelled_stores):
    store = labelled_stores["train"]
    X, y = store.load("mean")
    targets = np.eye(int(y.max()) + 1)[y]
    on_disk = _RidgeSolver(store.features("mean"), targets)
    in_memory = _RidgeSolver(X, targets)
    np.testing.assert_allclose(on_disk.coefficients(1.0)[0], in_memory.coefficients(1.0)[0], rtol=1e-10, atol=1e-12)
    assert isinstance(featx.train_head(store, "ridge").estimator.alpha_, float)


def test_its_memory_does_not_grow_with_the_rows():
    """At two sizes the solver's peak is the same block, not a share of the rows (the targets are
    centred a block at a time too)."""
    peaks = {}
    for n in (60_000, 240_000):
        X, targets = _rows(n, 64), np.zeros((n, 3))
        tracemalloc.start()
        try:
            _RidgeSolver(X, targets)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    added_rows_bytes = 180_000 * 64 * 4
    assert peaks[240_000] - peaks[60_000] < 0.02 * added_rows_bytes, peaks
