"""Heads: the scikit-learn contract, selection, safe persistence, many heads per cache."""
import json

import numpy as np
import pytest
from sklearn.datasets import make_classification

import featx
from featx.errors import FeatxError
from featx.heads import LogRegHead, MLPHead, TrainedHead, parse_head_spec
from featx.mteb import mteb_protocol
from featx.results import best_head
from featx.train import HeadSpec, train_head, train_heads


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=600, n_features=20, n_informative=8, n_classes=3, random_state=0)
    return X.astype(np.float32), y


def test_logreg_sweeps_C_and_records_the_curve(blobs):
    X, y = blobs
    head = LogRegHead(Cs=(0.001, 0.1, 10.0)).fit(X[:500], y[:500], X[500:], y[500:])
    assert [p["C"] for p in head.curve_] == [0.001, 0.1, 10.0] and head.selection_ == "validation"
    best = max(head.curve_, key=lambda p: (p["score"], -p["C"]))
    assert head.C_ == best["C"] and head.score(X[500:], y[500:]) == pytest.approx(best["score"])
    assert LogRegHead(cv=3, Cs=(0.01, 1.0)).fit(X, y).selection_ == "3-fold"


def test_mlp_is_deterministic_and_early_stops(blobs):
    X, y = blobs
    a = MLPHead(max_epochs=200, patience=3).fit(X, y)
    b = MLPHead(max_epochs=200, patience=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_iter_ < 200 and a.history_[a.best_epoch_ - 1]["val_loss"] == min(h["val_loss"] for h in a.history_)
    assert a.score(X, y) > 0.8


def test_one_head_left_to_fit_runs_here_on_every_core(labelled_stores, monkeypatch):
    """--jobs 2 with one head to fit alone ran it in a worker process given one core of two."""
    import os

    import featx.train

    ran_in, original = [], featx.train._fit
    monkeypatch.setattr(featx.train, "_fit", lambda *a: ran_in.append(os.getpid()) or original(*a))
    heads, _ = train_heads(labelled_stores["train"], [HeadSpec.parse("logreg:C=1")], ["mean"],
                           val=labelled_stores["dev"], jobs=2)
    assert ran_in == [os.getpid()] and heads[0].estimator.C_ == 1.0


def test_many_heads_per_cache_table(labelled_stores):
    specs = [HeadSpec.parse(s) for s in ("logreg:C=0.1", "logreg:C=10", "mlp:max_epochs=30")]
    heads, rows = train_heads(labelled_stores["train"], specs, ["mean", "cls"], val=labelled_stores["dev"],
                              test=labelled_stores["test"], jobs=2)
    assert [r["head"] for r in rows] == ["logreg-C0.1-mean", "logreg-C10-mean", "mlp-max_epochs30-mean",
                                         "logreg-C0.1-cls", "logreg-C10-cls", "mlp-max_epochs30-cls"]
    for head, row in zip(heads, rows):
        assert row["test_accuracy"] == head.evaluate(labelled_stores["test"])["accuracy"]
        assert row["test_accuracy"] > 0.9, row
    assert best_head(heads, rows).name == rows[int(np.argmax([r["val_accuracy"] for r in rows]))]["head"]


def test_saved_head_has_no_pickle_and_predicts_identically(labelled_stores, tmp_path):
    for kind in ("logreg", "mlp"):
        head = train_head(labelled_stores["train"], kind, pooling="cls", val=labelled_stores["dev"])
        head.save(tmp_path / kind)
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == ["head.json", "head.safetensors"]
        meta = json.loads((tmp_path / kind / "head.json").read_text())
        assert meta["pooling"] == "cls" and meta["store_fingerprint"] == labelled_stores["train"].fingerprint
        loaded = TrainedHead.load(tmp_path / kind)
        np.testing.assert_array_equal(loaded.predict_proba(labelled_stores["test"]),
                                      head.predict_proba(labelled_stores["test"]))


def test_head_refuses_a_store_with_another_fingerprint(labelled_stores, tiny_backbone, tmp_path):
    head = train_head(labelled_stores["train"], "logreg", pooling="mean")
    other = featx.extract(labelled_stores["test"].path.with_suffix(".csv"), tmp_path / "other.h5",
                          model=tiny_backbone, pooling="mean", dtype="fp32", normalize=True, progress=False)
    with pytest.raises(FeatxError, match="another config"):
        head.evaluate(other)


def test_mteb_protocol_reports_mean_and_std_over_experiments(labelled_stores):
    rows = mteb_protocol(labelled_stores["train"], labelled_stores["test"], ["mean"], k=4, experiments=5, seeds=3)
    (row,) = rows
    assert 0 < row["test_accuracy"] <= 1 and row["test_accuracy_std"] >= 0
    assert row["chosen"] == "4 per label x 5 experiments, seed 42" and len(row["experiments_accuracy"]) == 5
    assert row["test_accuracy"] == pytest.approx(sum(row["experiments_accuracy"]) / 5)
    spread = row["seed_spread"]
    assert spread["seeds"] == 3 and spread["min"] <= spread["mean"] <= spread["max"] and spread["sd"] >= 0


def test_head_spec_parsing_and_errors():
    assert parse_head_spec("mlp:hidden=512,dropout=0.2,standardize=false") == (
        "mlp", {"hidden": 512, "dropout": 0.2, "standardize": False})
    assert parse_head_spec("logreg:Cs=1e-5|1e-4|0.001") == ("logreg", {"Cs": (1e-5, 1e-4, 0.001)})
    with pytest.raises(FeatxError, match="no parameter 'depth'"):
        parse_head_spec("mlp:depth=3")
    with pytest.raises(FeatxError, match="unknown head 'svm'"):
        parse_head_spec("svm")


def test_a_grid_in_a_table_cell_keeps_the_table_whole():
    from featx.metrics import markdown_table

    table = markdown_table([{"head": "logreg:Cs=1e-4|1e-3", "accuracy": 0.5}], [("head", "head"), ("accuracy", "acc")])
    row = table.splitlines()[2]
    assert row == "| logreg:Cs=1e-4\\|1e-3 | 0.5000 |"
    assert row.replace("\\|", "").count("|") == 3  # two cells: their borders only


def test_the_mlp_trains_on_a_stores_dataset_read_from_disk_in_blocks(tmp_path, tiny_backbone):
    from featx.store.rows import StoredRows, as_rows

    rows = ["text,label"] + [f"{'great' if i % 2 else 'awful'} film {i},{'pos' if i % 2 else 'neg'}" for i in range(60)]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(rows) + "\n")
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, dtype="fp32", progress=False) as store:
        lazy, (X, y) = store.features(), store.load()
        assert isinstance(as_rows(lazy, 16), StoredRows) and as_rows(X, 16) is X
        head = MLPHead(max_epochs=30, random_state=0).fit(lazy, y)
        assert head.n_features_in_ == X.shape[1] and head.score(X, y) > 0.9
