"""The hybrid head: TF-IDF of the texts beside their cached vectors, from the library, the CLI and a predictor."""
import json
import math

import numpy as np
import pytest
import scipy.sparse
import scipy.special
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import featx
from featx.data import read_texts
from featx.errors import FeatxError
from featx.heads import HybridHead, TextVectors, TrainedHead
from featx.heads.tfidf import TFIDF_PARAMS
from tests.faults.conftest import assert_refused


def _texts(store):
    return read_texts(featx.open_input(str(store.path).replace(".h5", ".csv")))


@pytest.fixture(scope="module")
def parts(labelled_stores):
    train, dev, test = (labelled_stores[s] for s in ("train", "dev", "test"))
    return {"train": (train, _texts(train)), "dev": (dev, _texts(dev)), "test": (test, _texts(test))}


@pytest.mark.parametrize("newton", [True, False])
def test_weight_and_C_are_chosen_on_validation_and_the_model_is_a_plain_logistic_regression(parts, newton, monkeypatch):
    """The sweep's best pair is fitted afresh; it is scikit-learn's LogisticRegression on the joined
    features, to the solver's tolerance: lbfgs's own stopping point where L-BFGS-B fits it, the
    optimum itself where turned, preconditioned Newton fits it (three classes, and a wide TF-IDF,
    unless told otherwise)."""
    from featx.heads import hybrid_sweep

    if not newton:
        monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)
        monkeypatch.setattr(hybrid_sweep, "NEWTON_CLASSES", 1000)
    (train, texts), (dev, dev_texts), (test, test_texts) = parts["train"], parts["dev"], parts["test"]
    X, y = train.load("mean")
    X_dev, y_dev = dev.load("mean")
    head = HybridHead(weights=(0.5, 2.0), Cs=(0.1, 1.0, 10.0)).fit(TextVectors(texts, X), y,
                                                                  TextVectors(dev_texts, X_dev), y_dev)
    assert len(head.curve_) == 6 and head.selection_ == "validation"
    best = max(head.curve_, key=lambda p: (p["score"], -p["C"], -abs(math.log(p["weight"]))))
    assert (head.weight_, head.C_) == (best["weight"], best["C"])
    vectorizer, scaler = TfidfVectorizer(**TFIDF_PARAMS).fit(texts), StandardScaler().fit(X.astype(np.float64))

    def stacked(t, v):
        dense = scaler.transform(v.astype(np.float64)) * (head.weight_ / math.sqrt(X.shape[1]))
        return scipy.sparse.hstack([vectorizer.transform(t), scipy.sparse.csr_matrix(dense)], format="csr")
    reference = LogisticRegression(C=head.C_, max_iter=1000, random_state=0).fit(stacked(texts, X), y) if not newton \
        else LogisticRegression(C=head.C_, max_iter=10000, solver="newton-cg", tol=1e-10).fit(stacked(texts, X), y)
    X_test, _ = test.load("mean")
    np.testing.assert_allclose(head.predict_proba(TextVectors(test_texts, X_test)),
                               reference.predict_proba(stacked(test_texts, X_test)), atol=1e-4 if newton else 1e-5)


def test_a_head_that_reads_texts_refuses_vectors_alone_and_texts_of_other_rows(parts):
    (train, _), (_, dev_texts) = parts["train"], parts["dev"]
    X, y = train.load("mean")
    with pytest.raises(featx.FeatxError, match="TextVectors"):
        HybridHead().fit(X, y)
    with pytest.raises(FeatxError, match=r"does not hold the texts of .* row for row"):
        featx.train_head(train, "hybrid", texts=dev_texts)
    with pytest.raises(FeatxError, match="reads each row's text beside its vector"):
        featx.train_head(train, "hybrid")


def test_save_load_and_predictor_give_the_same_probabilities(parts, tmp_path):
    (train, texts), (test, test_texts) = parts["train"], parts["test"]
    trained = featx.train_head(train, "hybrid", texts=texts, Cs=(1.0,), weights=(1.0, 2.0))
    expected = trained.predict_proba(test, test_texts)
    loaded = TrainedHead.load(trained.save(tmp_path / "head"))
    np.testing.assert_allclose(loaded.predict_proba(test, test_texts), expected, atol=1e-12)
    assert loaded.estimator.weight_ == trained.estimator.weight_
    with pytest.raises(FeatxError, match="reads each row's text"):
        loaded.predict(test)
    featx.Predictor(loaded).save(tmp_path / "model")
    predictor = featx.load_predictor(tmp_path / "model")
    np.testing.assert_allclose(predictor.predict_proba(test_texts), expected, atol=1e-5)


def test_validation_metrics_read_the_rows_the_sweep_cached_and_a_damaged_entry_is_transformed(parts, tmp_path,
                                                                                             monkeypatch):
    """The validation rows are transformed once (by the sweep, which caches them); the head's validation
    metrics read them back (texts whose hashes are known). A damaged entry is never read: one warning, the
    entry removed, the texts transformed again."""
    from featx.errors import FeatxWarning
    from featx.heads.tfidf import check_texts_match, kept_rows
    from featx.train import HeadSpec, train_heads

    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    (train, texts), (dev, dev_texts) = parts["train"], parts["dev"]
    transformed = []
    transform = TfidfVectorizer.transform
    monkeypatch.setattr(TfidfVectorizer, "transform", lambda self, t: transformed.append(len(t)) or transform(self, t))
    (head,), _ = train_heads(train, [HeadSpec("hybrid", {"weights": (1.0, 2.0), "Cs": (0.1, 1.0)})], ["mean"],
                             val=dev, texts={"train": texts, "val": dev_texts})
    assert transformed == [len(dev)]  # before: a second transform, for the validation metrics
    X_dev, y_dev = dev.load("mean")
    rows = TextVectors(check_texts_match(dev, dev_texts, "the dev texts"), X_dev)  # hashes known, as in a run
    served = head.estimator.predict_proba(rows)
    assert transformed == [len(dev)]
    (entry,) = (tmp_path / "cache" / "tfidf").glob("*-rows-*")
    data = entry / "data.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.warns(FeatxWarning, match="TF-IDF rows .* failed the check written with it"):
        assert kept_rows(head.estimator.tfidf_key_, check_texts_match(dev, dev_texts, "the dev texts")) is None
    assert not entry.exists()  # removed, so the damage is reported once
    np.testing.assert_allclose(head.estimator.predict_proba(rows), served, atol=1e-12)
    assert transformed == [len(dev), len(dev)]
    assert head.metrics["val"]["accuracy"] == pytest.approx(np.mean(head.estimator.predict(rows) == y_dev))


def test_featx_train_with_texts_and_predict(cli, parts, tmp_path):
    (train, _), (dev, _), (test, _) = parts["train"], parts["dev"], parts["test"]
    csv = {name: str(store.path).replace(".h5", ".csv") for name, store in (("train", train), ("dev", dev),
                                                                          ("test", test))}
    result = cli("train", train.path, "-o", tmp_path / "runs", "--head", "hybrid", "--pooling", "mean",
                 "--texts", csv["train"], "--val", dev.path, "--val-texts", csv["dev"],
                 "--test", test.path, "--test-texts", csv["test"], "--export", tmp_path / "model")
    assert result.code == 0, result.err
    rows = {r["head"]: r for r in json.loads((tmp_path / "runs" / "results.json").read_text())["rows"]}
    assert rows["hybrid-mean"]["test_accuracy"] > 0.9 and "weight=" in rows["hybrid-mean"]["chosen"]
    head_dir = tmp_path / "runs" / "heads" / "hybrid-mean"
    head_names = TrainedHead.load(head_dir).class_names
    assert TrainedHead.load(head_dir).evaluate(test, _texts(test))["accuracy"] == rows["hybrid-mean"]["test_accuracy"]
    scored = cli("evaluate", head_dir, test.path, "--texts", csv["test"], "--json")
    assert scored.code == 0 and json.loads(scored.out)["accuracy"] == rows["hybrid-mean"]["test_accuracy"]
    assert_refused(cli("evaluate", head_dir, test.path), "reads each row's text beside its vector")
    predicted = cli("predict", tmp_path / "model", csv["test"], "-q")  # the exported hybrid, on raw texts
    labels = [json.loads(line)["label"] for line in predicted.out.splitlines()]
    assert predicted.code == 0 and labels == [head_names[i] for i in TrainedHead.load(head_dir).predict(
        test, _texts(test))]
    # Without the texts, or with another input's: one line, nothing written.
    assert_refused(cli("train", train.path, "-o", tmp_path / "none", "--head", "hybrid"),
                   "reads each row's text beside its vector", "--texts INPUT")
    assert_refused(cli("train", train.path, "-o", tmp_path / "none", "--head", "hybrid", "--texts", csv["dev"]),
                   "does not hold the texts of", "row for row")
    assert_refused(cli("train", train.path, "-o", tmp_path / "none", "--head", "hybrid", "--texts", csv["train"],
                       "--test", test.path), "--test-texts INPUT")
    assert not (tmp_path / "none").exists()


def test_each_splits_texts_are_hashed_once_in_a_run(parts, tmp_path, monkeypatch):
    """featx train checked the texts before writing, again before training, and once more per head on
    the test store (issue 32: texts hashed three or more times); now once per split."""
    import featx.featurizers.text as text_module
    from featx.train import HeadSpec, train_and_save

    hashed = []
    original = text_module.text_hashes
    monkeypatch.setattr(text_module, "text_hashes", lambda texts: hashed.append(len(texts)) or original(texts))
    (train, texts), (dev, dev_texts), (test, test_texts) = parts["train"], parts["dev"], parts["test"]
    specs = [HeadSpec("hybrid", {"weights": (1.0,), "Cs": (1.0,)}), HeadSpec("hybrid", {"weights": (2.0,), "Cs": (1.0,)})]
    run = train_and_save(train, specs, tmp_path / "runs", poolings=["mean"], val=dev, test=test,
                         texts={"train": texts, "val": dev_texts, "test": test_texts})
    assert len(run.heads) == 2 and all("test" in head.metrics for head in run.heads)
    assert sorted(hashed) == sorted([len(texts), len(dev_texts), len(test_texts)])


def _corpus(n=120, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    return [" ".join(rng.choice(words, size=8)) for _ in range(n)]


def _near(a, b):
    """Equal TF-IDF rows up to rounding (fit_transform and transform sum in other orders)."""
    return a.shape == b.shape and abs(a - b).max() < 1e-12


def test_a_tfidf_fit_is_made_once_per_set_of_texts_and_a_damaged_one_is_made_again(tmp_path, monkeypatch):
    from featx.errors import FeatxWarning
    from featx.heads import tfidf

    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    texts, other = _corpus(), _corpus(30, seed=1)
    first = tfidf.fit_tfidf(texts)
    reference = TfidfVectorizer(**TFIDF_PARAMS).fit(texts)
    assert _near(first.rows, reference.transform(texts))
    first_rows = first.rows_of(other)
    fits = []
    monkeypatch.setattr(TfidfVectorizer, "fit_transform", lambda self, t: fits.append(1) or pytest.fail("refitted"))
    again = tfidf.fit_tfidf(list(texts))  # the same texts, another list: served from the cache
    assert again.vectorizer.vocabulary_ == reference.vocabulary_ and (again.rows != first.rows).nnz == 0
    np.testing.assert_array_equal(again.vectorizer.idf_, reference.idf_)
    assert (again.rows_of(other) != first_rows).nnz == 0 and fits == []
    monkeypatch.undo()
    monkeypatch.setenv("FEATX_CACHE", str(tmp_path / "cache"))
    data = next(path for path in (tmp_path / "cache" / "tfidf").glob("*/data.npy")  # damage the fit in place
                if "-rows-" not in path.parent.name)
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.warns(FeatxWarning, match="failed the check written with it"):
        mended = tfidf.fit_tfidf(texts)
    assert _near(mended.rows, reference.transform(texts))


def test_an_unwritable_cache_costs_time_only(tmp_path, monkeypatch):
    from featx.errors import FeatxWarning
    from featx.heads import tfidf

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FEATX_CACHE", str(blocker))
    with pytest.warns(FeatxWarning, match="set FEATX_CACHE to a writable folder"):
        fit = tfidf.fit_tfidf(_corpus())
    assert _near(fit.rows_of(_corpus(30, seed=1)), TfidfVectorizer(**TFIDF_PARAMS).fit(_corpus()).transform(
        _corpus(30, seed=1)))
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cg preconditioned"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_column_block_fit_is_logistic_regression_on_the_joined_matrix(n_classes, solver):
    """Sparse TF-IDF beside dense columns, never joined: scikit-learn's objective and optimum, by
    L-BFGS-B (the kept fit) and by truncated Newton (the sweep's on wide TF-IDF), its conjugate
    gradients plain or scaled by the Hessian's diagonal."""
    import functools

    from featx.heads import logistic_columns, logistic_newton
    from featx.heads.logistic_columns import Columns, class_probabilities

    fit_softmax = logistic_columns.fit_softmax if solver == "lbfgs" else functools.partial(
        logistic_newton.fit_softmax_newton, precondition=solver.endswith("preconditioned"))

    rng = np.random.default_rng(0)
    texts = _corpus(300)
    sparse = TfidfVectorizer(**TFIDF_PARAMS).fit_transform(texts)
    dense = rng.normal(size=(300, 5))
    y = rng.integers(0, n_classes, size=300)
    joined = scipy.sparse.hstack([sparse, scipy.sparse.csr_matrix(dense)], format="csr")
    for C in (0.1, 10.0):
        W = fit_softmax(Columns([sparse, dense], threads=2), y, n_classes, C)
        reference = LogisticRegression(C=C, max_iter=1000, solver=solver.split()[0]).fit(joined, y)
        # Preconditioned, it stops elsewhere within the same gradient tolerance: compared with the optimum
        # itself (scikit-learn's own newton-cg, stopped at 1e-4, is up to 6e-3 from it at three classes).
        optimum = reference if solver != "newton-cg preconditioned" else LogisticRegression(
            C=C, max_iter=10000, solver="newton-cg", tol=1e-10).fit(joined, y)
        np.testing.assert_allclose(class_probabilities(Columns([sparse, dense]), W), optimum.predict_proba(joined),
                                   atol=2e-4 if optimum is reference else 5e-4)

        def objective(coef, intercept, C=C):
            z = joined @ coef.T + intercept
            lse = np.logaddexp(0, z[:, 0]) - (y == 1) * z[:, 0] if z.shape[1] == 1 else \
                scipy.special.logsumexp(z, axis=1) - z[np.arange(300), y]
            return lse.mean() + (coef ** 2).sum() / (2 * C * 300)
        assert objective(W[:-1].T, W[-1]) <= objective(reference.coef_, reference.intercept_) + 1e-6


def test_the_hessians_diagonal_is_the_squared_columns_weighed_by_the_curvature():
    from featx.heads.logistic_columns import Columns

    rng = np.random.default_rng(0)
    sparse = scipy.sparse.random(40, 30, density=0.2, random_state=0, format="csr")
    dense = rng.normal(size=(40, 4))
    curvature = rng.random((40, 3)).astype(np.float32)
    joined = np.hstack([sparse.toarray(), dense, np.ones((40, 1))])
    want = np.stack([np.diag(joined.T @ (curvature[:, [c]] * joined)) for c in range(3)], axis=1)
    np.testing.assert_allclose(Columns([sparse, dense], threads=2).diagonal(curvature), want, rtol=1e-5)


def _noisy_rows(rng, n):
    """Rows whose one telling word carries the label a quarter of the time wrong: large Cs overfit."""
    y = rng.integers(0, 2, n)
    shown = np.where(rng.random(n) < 0.25, 1 - y, y)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join([("good", "bad")[label], *rng.choice(words, size=12)]) for label in shown]
    return TextVectors(texts, rng.normal(size=(n, 16)).astype(np.float32)), y


def test_the_preconditioned_sweep_on_turned_vectors_scores_as_the_plain_one(monkeypatch):
    """Wide TF-IDF: the sweep fits by preconditioned Newton with the vectors turned to their principal
    axes (correlated here); every validation score and the choice are L-BFGS-B's on the vectors as given."""
    from featx.heads import hybrid, hybrid_sweep

    rng = np.random.default_rng(3)
    (X, y), (X_val, y_val) = _noisy_rows(rng, 300), _noisy_rows(rng, 200)
    mixing = rng.normal(size=(16, 16)).astype(np.float32)
    X, X_val = TextVectors(X.texts, X.vectors @ mixing), TextVectors(X_val.texts, X_val.vectors @ mixing)
    newton = hybrid.HybridHead(Cs=(0.1, 1.0, 10.0), weights=(0.5, 2.0)).fit(X, y, X_val, y_val)
    monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)  # L-BFGS-B on every fit
    lbfgs = hybrid.HybridHead(Cs=(0.1, 1.0, 10.0), weights=(0.5, 2.0)).fit(X, y, X_val, y_val)
    assert [p["score"] for p in newton.curve_] == [p["score"] for p in lbfgs.curve_]
    assert (newton.weight_, newton.C_) == (lbfgs.weight_, lbfgs.C_)


def test_each_weights_C_path_stops_once_validation_has_fallen_three_times(monkeypatch):
    """The sweep drops only the Cs after a path's validation score fell below its best at each of
    the last three: every point it keeps is the full sweep's, the full sweep's paths go on where
    it stopped, and its choice is the best of what it kept."""
    from featx.heads import hybrid_sweep

    rng = np.random.default_rng(0)
    (X, y), (X_val, y_val) = _noisy_rows(rng, 300), _noisy_rows(rng, 200)
    Cs = tuple(float(c) for c in np.logspace(-3, 4, 15))
    stopped = HybridHead(Cs=Cs, weights=(0.5, 2.0)).fit(X, y, X_val, y_val)
    monkeypatch.setattr(hybrid_sweep, "PATIENCE", len(Cs))
    full = HybridHead(Cs=Cs, weights=(0.5, 2.0)).fit(X, y, X_val, y_val)
    assert len(full.curve_) == 2 * len(Cs) > len(stopped.curve_)
    for weight in (0.5, 2.0):
        kept = [p for p in stopped.curve_ if p["weight"] == weight]
        scores = [p["score"] for p in kept]
        assert kept == [p for p in full.curve_ if p["weight"] == weight][:len(kept)]
        # it stopped at the first point whose last three scored below the best before them
        ends = [i + 1 for i in range(3, len(kept)) if max(scores[i - 2:i + 1]) < max(scores[:i + 1])]
        assert len(kept) == (ends[0] if ends else len(Cs))
    best = max(stopped.curve_, key=lambda p: (p["score"], -p["C"], -abs(math.log(p["weight"]))))
    assert (stopped.weight_, stopped.C_) == (best["weight"], best["C"])


def test_a_flat_start_does_not_stop_a_path():
    """Ties are not falls: at the smallest Cs every row is one class, and the path goes on to learn."""
    from featx.heads.hybrid_sweep import fell as _fell

    flat = [{"score": 0.5}] * 5
    assert not _fell(flat)
    assert not _fell([*flat, {"score": 0.9}, {"score": 0.8}, {"score": 0.8}])
    assert _fell([*flat, {"score": 0.9}, {"score": 0.8}, {"score": 0.8}, {"score": 0.7}])


def test_a_products_bands_spread_over_threads_only_while_cores_are_free():
    """The sweep's paths each run on one core; a path's products take the others' cores once they are
    free (`spread`): its bands then run on the sparse pool's threads, else one by one in its own thread,
    with the same result."""
    import threading

    from featx.heads.logistic_columns import Columns

    rng = np.random.default_rng(0)
    sparse = scipy.sparse.random(200, 50, density=0.1, random_state=0, format="csr")
    free = [False]
    columns = Columns([sparse, rng.normal(size=(200, 3))], threads=2, spread=lambda: free[0])
    seen = []

    class Watched:
        def __init__(self, band):
            self.band = band

        def __matmul__(self, vector):
            seen.append(threading.current_thread().name)
            return self.band @ vector

    block = columns.blocks[0]
    assert len(block.rows) == 2
    block.rows = [Watched(band) for band in block.rows]
    W = rng.normal(size=(54, 1))
    alone = columns.scores(W)
    assert seen == [threading.current_thread().name] * 2
    seen.clear()
    free[0] = True
    np.testing.assert_array_equal(columns.scores(W), alone)
    assert len(seen) == 2 and all(name.startswith("featx-sparse") for name in seen)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_turned_fit_is_the_optimum_from_zero_or_from_a_start(n_classes):
    """The kept fit on wide TF-IDF: Newton on the vectors turned to their principal axes, the weights
    turned back (and a start turned there first): scikit-learn's optimum on the blocks as given."""
    from featx.heads.logistic_columns import Columns, class_probabilities
    from featx.heads.logistic_newton import fit_softmax_turned

    rng = np.random.default_rng(1)
    sparse = TfidfVectorizer(**TFIDF_PARAMS).fit_transform(_corpus(300))
    dense = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))  # correlated columns
    y = rng.integers(0, n_classes, size=300)
    joined = scipy.sparse.hstack([sparse, scipy.sparse.csr_matrix(dense)], format="csr")
    optimum = LogisticRegression(C=3.0, max_iter=10000, solver="newton-cg", tol=1e-10).fit(joined, y)
    near = fit_softmax_turned([sparse, dense], y, n_classes, 1.0)  # a start: the optimum at another C
    for start in (None, near):
        W = fit_softmax_turned([sparse, dense], y, n_classes, 3.0, start)
        # within the gradient tolerance (1e-4) of it: up to 5.4e-4 in a probability at three classes
        np.testing.assert_allclose(class_probabilities(Columns([sparse, dense]), W), optimum.predict_proba(joined),
                                   atol=1e-3)


def test_three_classes_and_more_fit_by_newton_even_where_the_tfidf_is_narrow(parts, monkeypatch):
    """L-BFGS-B takes many more steps on the multinomial loss (emotion's head 41 -> 19.5 s by Newton):
    at three classes every fit, the sweep's and the kept one, is truncated Newton's; two classes on a
    narrow TF-IDF stay with L-BFGS-B."""
    from featx.heads import hybrid, hybrid_sweep

    def refused(*args, **kwargs):
        raise AssertionError("fitted by L-BFGS-B")

    monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)  # no TF-IDF counts as wide
    monkeypatch.setattr(hybrid_sweep, "fit_softmax", refused)
    monkeypatch.setattr(hybrid, "fit_softmax", refused)
    (train, texts), (dev, dev_texts) = parts["train"], parts["dev"]
    (X, y), (X_dev, y_dev) = train.load("mean"), dev.load("mean")
    assert len(np.unique(y)) == 3
    head = HybridHead(weights=(0.5, 2.0), Cs=(0.1, 1.0)).fit(TextVectors(texts, X), y, TextVectors(dev_texts, X_dev),
                                                            y_dev)
    assert head.weights_.shape[1] == 3
    two = y == y.max()
    with pytest.raises(AssertionError, match="L-BFGS-B"):
        HybridHead(weights=(0.5, 2.0), Cs=(0.1, 1.0)).fit(TextVectors(texts, X), two, TextVectors(dev_texts, X_dev),
                                                          y_dev == y.max())


def test_the_turned_one_vs_rest_fit_is_each_labels_logistic_regression():
    """Multi-label hybrid heads with many labels fit by Newton too: every label's binary loss, their
    Hessian blocks solved together, from zero and from a start; each label's column is scikit-learn's
    LogisticRegression optimum for that label alone."""
    from featx.heads.logistic_columns import Columns, probabilities
    from featx.heads.logistic_newton import fit_logistic_turned

    rng = np.random.default_rng(2)
    sparse = TfidfVectorizer(**TFIDF_PARAMS).fit_transform(_corpus(300))
    dense = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    Y = (rng.random((300, 4)) < [0.1, 0.3, 0.5, 0.05]).astype(np.uint8)
    joined = scipy.sparse.hstack([sparse, scipy.sparse.csr_matrix(dense)], format="csr")
    want = np.column_stack([LogisticRegression(C=3.0, max_iter=10000, solver="newton-cg", tol=1e-10).fit(
        joined, Y[:, label]).predict_proba(joined)[:, 1] for label in range(4)])
    near = fit_logistic_turned([sparse, dense], Y, 1.0)
    for start in (None, near):
        W = fit_logistic_turned([sparse, dense], Y, 3.0, start)
        np.testing.assert_allclose(probabilities(Columns([sparse, dense]), W), want, atol=1e-3)


@pytest.mark.parametrize("newton", [True, False])
def test_the_kept_fit_reuses_the_rows_the_sweep_prepared(parts, newton, monkeypatch):
    """With validation rows given, the sweep's training rows are the kept fit's: their TF-IDF is cut into
    float32 bands (and its transpose) once, for the sweep, and the kept fit from zero multiplies the same
    bands. Before, it prepared them a third time (0.3-0.7 s of IMDB's head), and turned the vectors again."""
    from featx.heads import hybrid_sweep
    from featx.heads.logistic_columns import _SparseBands

    if not newton:
        monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)
    (train, texts), (dev, dev_texts) = parts["train"], parts["dev"]
    X, y = train.load("mean")
    X_dev, y_dev = dev.load("mean")
    prepared = []
    prepare = _SparseBands.__init__

    def counted(self, matrix, *args, **kwargs):
        prepared.append(matrix.shape[0])
        prepare(self, matrix, *args, **kwargs)

    monkeypatch.setattr(_SparseBands, "__init__", counted)
    head = HybridHead(weights=(0.5, 2.0), Cs=(0.1, 1.0)).fit(TextVectors(texts, X), y, TextVectors(dev_texts, X_dev),
                                                            y_dev)
    assert head.selection_ == "validation"
    assert sorted(prepared) == sorted([len(y), len(y_dev)])  # the training rows' bands once, the validation's once


@pytest.mark.parametrize("labels", [2, 4])
def test_a_multi_label_sweep_prepares_its_blocks_once_a_weight(labels, monkeypatch):
    """A multi-label sweep multiplies one weight's training and validation blocks for every C; they are
    prepared (float32 CSR in row bands, the transpose beside them) once a weight, however many Cs. Before,
    L-BFGS-B's fits (two labels here) prepared both again for every C, Newton's (four) the validation's."""
    from featx.heads import hybrid_sweep
    from featx.heads.logistic_columns import Columns

    monkeypatch.setattr(hybrid_sweep, "NEWTON_ENTRIES", 0)  # by width, L-BFGS-B; three labels and more, Newton
    rng = np.random.default_rng(4)
    X, X_dev = (TextVectors(_corpus(n, seed), rng.normal(size=(n, 6))) for n, seed in ((200, 1), (100, 2)))
    Y, Y_dev = ((rng.random((n, labels)) < 0.4).astype(np.uint8) for n in (200, 100))
    prepared = []
    prepare = Columns.__init__

    def counted(self, *args, **kwargs):
        prepared.append(1)
        prepare(self, *args, **kwargs)

    monkeypatch.setattr(Columns, "__init__", counted)
    counts = []
    for Cs in ((0.1, 1.0), (0.01, 0.1, 1.0, 10.0)):
        prepared.clear()
        head = HybridHead(weights=(0.5, 2.0), Cs=Cs).fit(X, Y, X_dev, Y_dev)
        assert head.task_ == "multi" and len(head.curve_) == 2 * len(Cs)
        counts.append(len(prepared))
    assert counts[0] == counts[1]
