"""Heads that share one X are fitted together (issue 34): a grid of logreg Cs runs as one lockstep
L-BFGS with one matrix product for all weight vectors (featx.heads.logistic_batch), and every head
equals its one-at-a-time fit within the solver's tolerance."""
import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import featx
from featx.heads import LogRegHead, TrainedHead
from featx.heads.logistic_batch import fit_logistic_batch
from featx.heads.split import CarvedSplit
from featx.train import HeadSpec, train_heads
from tests.conftest import write_lines

CS = (1e-4, 3e-3, 0.1, 1.0, 30.0, 1e3)


@pytest.fixture(scope="module")
def real_rows(data_dir, tiny_backbone, tmp_path_factory):
    """Real labels that a tiny model's vectors do not separate: 900 emotion posts (6 classes), mean-pooled."""
    lines = [json.loads(line) for line in (data_dir / "emotion" / "train.jsonl").read_text().splitlines()[:900]]
    folder = tmp_path_factory.mktemp("many")
    path = write_lines(folder / "emotion.csv", ["text,label"] + [
        f'"{row["text"]}",{row["label"]}' for row in lines])
    store = featx.extract(path, folder / "emotion.h5", model=tiny_backbone, pooling="mean", dtype="fp32",
                          progress=False)
    X, y = store.load("mean")
    return store, X, np.asarray(y)


def _objective(model_coef, intercept, X, y_index, C):
    """scikit-learn's lbfgs objective, float64: mean log-loss + |coef|^2 / (2 C n)."""
    scores = X.astype(np.float64) @ model_coef.T + intercept
    if scores.shape[1] == 1:
        z = scores[:, 0]
        loss = np.mean(np.logaddexp(0, z) - (y_index == 1) * z)
    else:
        top = scores.max(1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(scores - top).sum(1))
        loss = np.mean(lse - scores[np.arange(len(y_index)), y_index])
    return loss + (model_coef ** 2).sum() / (2 * C * len(y_index))


@pytest.mark.parametrize("classes", [2, 6])
def test_each_batched_fit_is_scikit_learns_fit_at_its_C(real_rows, classes):
    _, X, y = real_rows
    labels = np.unique(y)
    y_index = np.searchsorted(labels, y) if classes == 6 else (y == labels[0]).astype(int)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    reported = []
    fit = fit_logistic_batch(X, y_index, classes, CS, max_scores=len(X) * 2 * (1 if classes == 2 else 6),
                             done=reported.append)
    assert reported == [2, 2, 2]  # a progress bar hears of each chunk as it ends
    for i, C in enumerate(CS):  # chunks of two heads: every chunk after the first starts warm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=C, max_iter=1000).fit(X, y_index)
        ours = fit.weights[i]
        theirs = _objective(model.coef_, model.intercept_, X, y_index, C)
        mine = _objective(ours[:, :-1], ours[:, -1], X, y_index, C)
        # Both stop at the gradient tolerance, not at the optimum: either may be the lower (ours by up to
        # 1.6e-6 above on the AVX2-only EPYC), so they agree to 1e-5.
        assert abs(mine - theirs) <= 1e-5 * max(1.0, abs(theirs)), (C, mine, theirs)
        p_ours = model.predict_proba(X)
        model.coef_, model.intercept_ = ours[:, :-1], ours[:, -1]
        np.testing.assert_allclose(model.predict_proba(X), p_ours, atol=0.02, err_msg=f"C={C}")
        assert fit.iterations[i] < 1000


def test_a_grid_of_logreg_specs_fits_in_one_batch_and_each_head_is_its_one_at_a_time_fit(real_rows, monkeypatch):
    store, _, _ = real_rows
    batches = []
    real = LogRegHead.fit_batch.__func__

    def spy(cls, heads, *args, **kwargs):
        batches.append(len(heads))
        return real(cls, heads, *args, **kwargs)

    monkeypatch.setattr(LogRegHead, "fit_batch", classmethod(spy))
    specs = [HeadSpec.parse(f"logreg:C={C:g}") for C in CS] + [HeadSpec.parse("logreg:C=1,class_weight=balanced"),
                                                               HeadSpec.parse("ridge")]
    heads, rows = train_heads(store, specs, ["mean"], seed=0)
    assert batches == [len(CS)]  # the balanced head and ridge fit alone
    assert [head.name for head in heads] == [f"{spec.label}-mean" for spec in specs]
    X, y = store.load("mean")
    cut = CarvedSplit(0.1, 0)
    (X_fit, _, _), y_fit, (X_val, _, _), _ = cut.cut(store, (X, None, None), np.asarray(y))
    shares = {head.fit_seconds for head in heads[:len(CS)]}  # each batched head: its share of the batch
    assert len(shares) == 1 and shares.pop() > 0 and rows[0]["fit_seconds"] == round(heads[0].fit_seconds, 2)
    for head, C in zip(heads, CS):
        alone = LogRegHead(C=C).fit(X_fit, y_fit)
        assert head.estimator.C_ == C and head.estimator.describe_choice() == f"C={C:.3g} (given)"
        np.testing.assert_allclose(head.estimator.predict_proba(X_val), alone.predict_proba(X_val), atol=0.02)
        assert np.mean(head.estimator.predict(X_val) == alone.predict(X_val)) >= 0.97


def test_a_batched_head_saves_and_loads_like_any_other(real_rows, tmp_path):
    store, X, _ = real_rows
    heads, _ = train_heads(store, [HeadSpec.parse("logreg:C=0.1"), HeadSpec.parse("logreg:C=10")], ["mean"])
    for head in heads:
        head.save(tmp_path / head.name)
        again = TrainedHead.load(tmp_path / head.name)
        np.testing.assert_array_equal(again.estimator.predict_proba(X[:50]), head.estimator.predict_proba(X[:50]))
        assert again.estimator.fitted_summary()["n_iter_"] == head.estimator.fitted_summary()["n_iter_"]


def test_a_head_that_cannot_batch_fits_alone(real_rows):
    """C chosen on validation, cross-validation, or multi-label targets: no batch key."""
    _, X, y = real_rows
    assert LogRegHead().batch_key(X, y) is None
    assert LogRegHead(C=1.0, cv=3).batch_key(X, y) is None
    assert LogRegHead(C=1.0).batch_key(X, np.zeros((len(y), 3), dtype=np.uint8)) is None
    assert LogRegHead(C=1.0).batch_key(X, y) == LogRegHead(C=5.0, random_state=3).batch_key(X, y)
    assert LogRegHead(C=1.0).batch_key(X, y) != LogRegHead(C=1.0, standardize=False).batch_key(X, y)


def test_ridge_heads_at_given_alphas_share_one_decomposition_and_equal_their_own_fits(real_rows, monkeypatch):
    import featx.heads.ridge as ridge

    store, _, _ = real_rows
    built = []
    real = ridge._RidgeSolver.__init__
    monkeypatch.setattr(ridge._RidgeSolver, "__init__", lambda self, *a: built.append(1) or real(self, *a))
    alphas = (0.1, 10.0, 1e3)
    heads, _ = train_heads(store, [HeadSpec.parse(f"ridge:alpha={a:g}") for a in alphas], ["mean"])
    assert len(built) == 1
    X, y = store.load("mean")
    (X_fit, _, _), y_fit, (X_val, _, _), y_val = CarvedSplit(0.1, 0).cut(store, (X, None, None), np.asarray(y))
    for head, alpha in zip(heads, alphas):
        alone = ridge.RidgeHead(alpha=alpha).fit(X_fit, y_fit, X_val, y_val)
        assert head.estimator.describe_choice() == alone.describe_choice() == f"alpha={alpha:.3g} (given)"
        np.testing.assert_allclose(head.estimator.coef_, alone.coef_, rtol=1e-10, atol=1e-12)
        assert head.estimator.temperature_ == alone.temperature_


def test_a_grid_on_one_class_is_refused_as_one_head_is(real_rows):
    _, X, y = real_rows
    one = np.full(len(y), y[0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogRegHead(C=1.0).fit(X, one)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogRegHead.fit_batch([LogRegHead(C=1.0), LogRegHead(C=2.0)], X, one)
