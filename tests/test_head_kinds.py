"""The head registry and the ridge and kNN kinds: scikit-learn's contract, the same answers as
scikit-learn's own estimators, and the same persistence as every head."""
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from featx.heads import KNNHead, RidgeHead, TrainedHead, make_head
from featx.train import HeadSpec, train_heads


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=700, n_features=24, n_informative=10, n_classes=4, random_state=1)
    return X.astype(np.float32), y


def test_ridge_equals_scikit_learn_at_every_alpha_of_its_sweep(blobs):
    X, y = blobs
    scaled = StandardScaler().fit(X[:500])
    head = RidgeHead(alphas=(0.1, 10.0, 1000.0)).fit(X[:500], y[:500], X[500:], y[500:])
    for point in head.curve_:
        reference = RidgeClassifier(alpha=point["alpha"]).fit(scaled.transform(X[:500]), y[:500])
        assert point["score"] == pytest.approx(reference.score(scaled.transform(X[500:]), y[500:]))
    reference = RidgeClassifier(alpha=head.alpha_).fit(scaled.transform(X[:500]), y[:500])
    assert np.array_equal(head.predict(X[500:]), reference.predict(scaled.transform(X[500:])))
    assert head.alpha_ == max(head.curve_, key=lambda p: (p["score"], p["alpha"]))["alpha"]
    probabilities = head.predict_proba(X[500:])
    assert np.allclose(probabilities.sum(1), 1.0) and head.temperature_ > 0


def test_knn_equals_scikit_learn_cosine_neighbours(blobs):
    X, y = blobs
    head = KNNHead(n_neighbors=7).fit(X[:500], y[:500])
    reference = KNeighborsClassifier(n_neighbors=7, metric="cosine", algorithm="brute").fit(X[:500], y[:500])
    assert np.mean(head.predict(X[500:]) == reference.predict(X[500:])) >= 0.99  # ties may break differently
    np.testing.assert_allclose(head.predict_proba(X[500:]).max(1), reference.predict_proba(X[500:]).max(1))
    chosen = KNNHead(ks=(1, 5, 25)).fit(X[:500], y[:500], X[500:], y[500:])
    scores = {p["k"]: p["score"] for p in chosen.curve_}
    for k, score in scores.items():
        assert score == pytest.approx(np.mean(KNNHead(n_neighbors=k).fit(X[:500], y[:500]).predict(X[500:]) == y[500:]))
    assert chosen.k_ == max(chosen.curve_, key=lambda p: (p["score"], p["k"]))["k"]


@pytest.mark.parametrize("kind", ["ridge", "knn"])
def test_new_kinds_train_save_and_load_like_every_head(tmp_path, labelled_stores, kind):
    heads, rows = train_heads(labelled_stores["train"], [HeadSpec(kind)], ["mean"], val=labelled_stores["dev"],
                              test=labelled_stores["test"])
    head = heads[0]
    assert rows[0]["test_accuracy"] > 0.9 and rows[0]["chosen"].endswith("(validation)")
    head.save(tmp_path / kind)
    loaded = TrainedHead.load(tmp_path / kind)
    test = labelled_stores["test"]
    assert np.array_equal(loaded.predict(test), head.predict(test))
    np.testing.assert_allclose(loaded.predict_proba(test), head.predict_proba(test))


def test_make_head_reads_the_registry():
    assert isinstance(make_head("ridge", alpha=2.0), RidgeHead) and make_head("knn").kind == "knn"
