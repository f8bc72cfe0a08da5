"""Heads that stream (issue 33): over the memory budget, featx train hands logreg, ridge and mlp the
store's rows on disk (StoredRows, read a block at a time); they choose as the in-memory fits do,
and the run's peak memory grows with the budget, not with the rows."""
import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import featx
from featx.constraints import MEMORY_BUDGET, ByteSize
from featx.errors import FeatxWarning, ParameterError
from featx.heads.inputs import labelled
from featx.heads.logistic_blocks import fit_logistic_blocks
from featx.heads.rows import column_moments, fits_in_memory, take
from featx.store.rows import StoredRows
from featx.train import HeadSpec, train_heads
from tests.conftest import write_lines

SMALL = "64K"  # every labelled_stores split is over it: 240 x 32 dims x 3 float64 copies is 184 KB


def _specs(*texts):
    return [HeadSpec.parse(text) for text in texts]


def test_over_the_budget_the_rows_stay_on_disk_and_read_as_the_store_holds_them(labelled_stores):
    store = labelled_stores["train"]
    X, y = labelled(store, "mean", budget=MEMORY_BUDGET.check("b", SMALL))
    in_memory, y_memory = store.load("mean")
    assert isinstance(X, StoredRows) and X.shape == in_memory.shape and X.block_rows == 64
    np.testing.assert_array_equal(y, y_memory)
    np.testing.assert_array_equal(X[:], in_memory.astype(np.float32))
    picked = np.array([200, 3, 70, 64, 63])
    np.testing.assert_array_equal(X[picked], in_memory[picked].astype(np.float32))
    part = take(X, np.arange(10, 230, 3))
    np.testing.assert_array_equal(np.concatenate(list(part.blocks())), in_memory[10:230:3].astype(np.float32))
    again = pickle.loads(pickle.dumps(part))  # a worker process opens the file itself
    np.testing.assert_array_equal(again[:], part[:])
    assert isinstance(labelled(store, "mean", budget=2 ** 30)[0], np.ndarray)
    np.testing.assert_array_equal(np.asarray(X, dtype=np.float64), in_memory)
    with pytest.raises(ValueError, match="copy=False"):  # numpy 2's protocol: no copy cannot be met
        np.asarray(X, copy=False)


def test_the_blockwise_logistic_fit_is_scikit_learns(labelled_stores):
    """The same objective and solver settings, from blocks of 64 rows: the in-memory LogisticRegression's
    weights."""
    from sklearn.linear_model import LogisticRegression

    X, y = labelled(labelled_stores["train"], "mean", budget=MEMORY_BUDGET.check("b", SMALL))
    assert isinstance(X, StoredRows) and len(X) > 3 * X.block_rows
    mean, scale = column_moments(X)
    for labels in (y, (y > 0).astype(int)):  # three classes, then two
        model = LogisticRegression(C=0.5).fit((X[:].astype(np.float64) - mean) / scale, labels)
        weights, _ = fit_logistic_blocks(X, labels, len(np.unique(labels)), 0.5, mean=mean, scale=scale)
        np.testing.assert_allclose(weights[:, :-1], model.coef_, atol=1e-4)
        np.testing.assert_allclose(weights[:, -1], model.intercept_, atol=1e-4)


@pytest.mark.parametrize("carved", [False, True])
def test_streamed_heads_choose_as_the_in_memory_fits(labelled_stores, carved):
    train, dev, test = labelled_stores["train"], labelled_stores["dev"], labelled_stores["test"]
    specs = _specs("logreg", "ridge", "mlp:max_epochs=5")
    runs = {}
    for budget in (SMALL, "1G"):
        heads, rows = train_heads(train, specs, ["mean"], val=None if carved else dev, test=test, memory_budget=budget)
        runs[budget] = {head.kind: (head, row) for head, row in zip(heads, rows)}
    for kind in ("logreg", "ridge"):
        (streamed, s_row), (loaded, l_row) = runs[SMALL][kind], runs["1G"][kind]
        assert s_row["chosen"] == l_row["chosen"], kind
        assert s_row["test_accuracy"] == l_row["test_accuracy"] and s_row["val_accuracy"] == l_row["val_accuracy"]
        for name, values in streamed.estimator.state_arrays().items():
            # the in-memory fit of a float32 store computes in float32, the streamed one in float64
            np.testing.assert_allclose(values, loaded.estimator.state_arrays()[name], rtol=1e-3, atol=1e-3)
    mlp, _ = runs[SMALL]["mlp"]
    assert mlp.metrics["val"]["accuracy"] > 0.9 and len(mlp.estimator.history_) == 5


def test_one_head_from_the_api_streams_the_same_way(labelled_stores):
    train, dev = labelled_stores["train"], labelled_stores["dev"]
    streamed = featx.train_head(train, "logreg", pooling="mean", val=dev, memory_budget=SMALL)
    loaded = featx.train_head(train, "logreg", pooling="mean", val=dev)
    assert streamed.estimator.C_ == loaded.estimator.C_
    np.testing.assert_allclose(streamed.estimator.model_.coef_, loaded.estimator.model_.coef_, rtol=1e-3, atol=1e-3)


def test_a_kind_that_cannot_stream_holds_its_rows_and_says_so(labelled_stores):
    with pytest.warns(FeatxWarning, match=r"the knn head holds its rows in memory .*--memory-budget"):
        heads, _ = train_heads(labelled_stores["train"], _specs("knn"), ["mean"], val=labelled_stores["dev"],
                               memory_budget=SMALL)
    assert heads[0].estimator.train_.shape[0] == len(labelled_stores["train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FeatxWarning)  # within the budget: nothing to say
        train_heads(labelled_stores["train"], _specs("knn"), ["mean"], val=labelled_stores["dev"])


def test_streamed_heads_train_in_worker_processes(labelled_stores):
    heads, _ = train_heads(labelled_stores["train"], _specs("logreg:C=1", "ridge:alpha=1"), ["mean"],
                              val=labelled_stores["dev"], memory_budget=SMALL, jobs=2)
    alone, _ = train_heads(labelled_stores["train"], _specs("logreg:C=1", "ridge:alpha=1"), ["mean"],
                           val=labelled_stores["dev"], memory_budget=SMALL)
    for a, b in zip(heads, alone):
        np.testing.assert_allclose(a.estimator.state_arrays()["coef"], b.estimator.state_arrays()["coef"])


def test_logreg_cross_validation_on_disk_is_refused_in_one_line(labelled_stores):
    with pytest.raises(featx.FeatxError, match="cv=K needs the training rows in memory"):
        train_heads(labelled_stores["train"], _specs("logreg:cv=3"), ["mean"], memory_budget=SMALL)


def test_a_budget_reads_its_units_and_refuses_nonsense():
    size = ByteSize(2 ** 16)
    assert [size.check("b", v) for v in ("64K", "1.5G", "2GiB", "512mb", 70_000)] == \
        [65_536, 1_610_612_736, 2 ** 31, 2 ** 29, 70_000]
    for bad in ("lots", "1iB", "-1M", "1K", 0):
        with pytest.raises(ParameterError):
            size.check("memory_budget", bad)
    assert fits_in_memory(1000, 32, 1000 * 32 * 24) and not fits_in_memory(1001, 32, 1000 * 32 * 24)


def test_the_cli_takes_a_budget_and_refuses_a_bad_one_in_one_line(labelled_stores, tmp_path):
    train = str(labelled_stores["train"].path)
    ok = subprocess.run([sys.executable, "-m", "featx", "train", train, "-o", str(tmp_path / "r"), "--head", "ridge",
                         "--pooling", "mean", "--memory-budget", SMALL], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "r" / "results.json").read_text())["peak_memory_mb"]["process"] > 0
    bad = subprocess.run([sys.executable, "-m", "featx", "train", train, "-o", str(tmp_path / "s"), "--head", "ridge",
                          "--memory-budget", "lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--memory-budget" in bad.stderr and len(bad.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "s").exists()


def _peak_mb(store, out, budget):
    run = subprocess.run([sys.executable, "-m", "featx", "train", str(store), "-o", str(out), "--head", "logreg:C=1",
                          "--head", "ridge", "--head", "mlp:max_epochs=2", "--memory-budget", budget],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads((out / "results.json").read_text())["peak_memory_mb"]["process"]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """A random 1-layer BERT as wide as MiniLM (384), so a row's vector outweighs its bookkeeping as in use."""
    from featx.bench.models import random_bert

    return random_bert(tmp_path_factory.mktemp("wide-bert"), hidden=384, layers=1, heads=6, intermediate=384,
                       max_positions=32)


@pytest.mark.parametrize("task", ["single", "multi"])
def test_the_peak_memory_grows_with_the_budget_not_with_the_rows(tmp_path, wide_model, task):
    """Four times the rows, streamed: the run's peak grows by under a tenth of what loading the added rows
    costs (three float64 copies, as a run within the budget makes); what is left is each row's label,
    index and content hash. Multi-label rows (three labels, one to three a row) stream the same way."""
    rng = np.random.default_rng(0)
    words = np.array(["great", "awful", "fine", "dull", "plot", "cast"])
    labels = ["a", "b", "a;b", "c", "a;c"] if task == "multi" else ["a", "b"]
    sizes, peaks = (10_000, 40_000), {}
    for n in sizes:
        rows = [labels[i % len(labels)] for i in range(n)]
        lines = ["text,label"] + [f"{' '.join(rng.choice(words, 4))} {label},{label}" for label in rows]
        featx.extract(write_lines(tmp_path / f"{n}.csv", lines), tmp_path / f"{n}.h5", model=str(wide_model),
                      pooling="mean", store_dtype="float16", progress=False,
                      **({"multi_label": ";"} if task == "multi" else {})).close()
        peaks[n] = _peak_mb(tmp_path / f"{n}.h5", tmp_path / f"r{n}", "2M")
    loading = (sizes[1] - sizes[0]) * 384 * 8 * 3 / 2 ** 20
    print(peaks, loading)
    assert peaks[sizes[1]] - peaks[sizes[0]] < 0.1 * loading, (peaks, loading)
