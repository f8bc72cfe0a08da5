"""Evaluation as a user meets it: cv=K, a split missing a class, scoring a predictor or checkpoint
on a file, gold labels in predictions, grid-edge warnings, and what finetune says without --val."""
import json

import numpy as np
import pytest

import featx
from featx.errors import FeatxError
from featx.heads import LogRegHead
from featx.train import HeadSpec, train_and_save, train_heads
from tests.conftest import run_cli, write_lines


def test_cv_k_selects_by_folds_of_train_and_the_validation_rows_are_only_reported(labelled_stores):
    train, dev = labelled_stores["train"], labelled_stores["dev"]
    heads, rows = train_heads(train, [HeadSpec.parse("logreg:cv=3"), HeadSpec("logreg")], ["mean"], val=dev)
    assert heads[0].estimator.selection_ == "3-fold" and heads[1].estimator.selection_ == "validation"
    assert rows[0]["val_accuracy"] is not None and rows[0]["chosen"].endswith("(3-fold)")
    heads, _ = train_heads(train, [HeadSpec.parse("logreg:cv=4")], ["mean"])  # no --val: a held-out fraction
    assert heads[0].estimator.selection_ == "4-fold" and heads[0].metrics["val"]["source"].startswith("0.1 of train")


def _store_from_rows(tmp_path, tiny_backbone, name, rows):
    path = write_lines(tmp_path / f"{name}.csv", ["text,label", *rows])
    return featx.extract(path, tmp_path / f"{name}.h5", model=tiny_backbone, pooling="mean,cls", dtype="fp32",
                         progress=False)


def test_a_test_split_missing_a_class_is_scored_and_an_unseen_label_refused(labelled_stores, tiny_backbone, tmp_path):
    train, test = labelled_stores["train"], labelled_stores["test"]
    head = featx.train_head(train, "logreg", pooling="mean")
    lines = (test.path.with_suffix(".csv")).read_text().splitlines()[1:]
    no_mid = _store_from_rows(tmp_path, tiny_backbone, "no-mid", [line for line in lines if not line.endswith(",mid")])
    assert no_mid.classes == ("neg", "pos") and head.class_names == ("mid", "neg", "pos")
    metrics = head.evaluate(no_mid)
    support = {row["class"]: row["support"] for row in metrics["per_class"]}
    assert support == {"mid": 0, "neg": 30, "pos": 30} and metrics["n"] == 60
    # The labels were mapped by name: the score equals the full test split's on the same rows.
    full = head.predict(test)
    rows = [i for i, line in enumerate(lines) if not line.endswith(",mid")]
    expected = np.mean(np.asarray(head.class_names)[full[rows]] == np.asarray(no_mid.classes)[no_mid.labels])
    assert metrics["accuracy"] == pytest.approx(expected)
    _, heads_rows = train_heads(train, [HeadSpec("logreg")], ["mean"], val=labelled_stores["dev"], test=no_mid)
    assert heads_rows[0]["test_accuracy"] == pytest.approx(metrics["accuracy"])
    unseen = _store_from_rows(tmp_path, tiny_backbone, "unseen", [*lines[:10], "great great film,wow"])
    with pytest.raises(FeatxError, match="labels the model never saw in training: 'wow'"):
        head.evaluate(unseen)


def test_evaluate_scores_a_predictor_on_a_labelled_file_and_predict_rows_carry_gold(
        capsys, labelled_stores, tmp_path):
    train, dev, test = labelled_stores["train"], labelled_stores["dev"], labelled_stores["test"]
    run = train_and_save(train, [HeadSpec("logreg")], tmp_path / "heads", poolings=["mean"], val=dev,
                         export=tmp_path / "predictor")
    test_csv = test.path.with_suffix(".csv")
    code, out, err = run_cli(capsys, "evaluate", str(tmp_path / "predictor"), str(test_csv), "--json", "--device", "cpu")
    assert code in (0, None), err
    assert json.loads(out) == run.best.evaluate(test)  # the same report as the head on the same rows' store
    code, out, err = run_cli(capsys, "evaluate", str(tmp_path / "heads" / "heads" / run.best.name), str(test.path))
    assert code in (0, None) and "accuracy" in out
    run_cli(capsys, "predict", str(tmp_path / "predictor"), str(test_csv), "-o", str(tmp_path / "p.jsonl"), "-q")
    predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    truth = [line.rsplit(",", 1)[1] for line in test_csv.read_text().splitlines()[1:]]
    assert [p["gold"] for p in predictions] == truth
    unlabelled = write_lines(tmp_path / "plain.txt", ["great film", "dull film"])
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "predictor"), str(unlabelled))
    assert code == 2 and "has no labels to score against" in err and err.count("\n") == 1


def test_a_choice_at_the_edge_of_its_grid_is_warned_on_the_command_line(capsys, tmp_path, tiny_backbone):
    """Validation still improving at the largest C: the warning names the grid and the next one to try."""
    import featx

    rng = np.random.default_rng(0)
    stores = {}
    for split in ("train", "dev"):
        labels = ["pos" if i % 2 else "neg" for i in range(200)]
        lines = ["text,label"] + [f"{' '.join(rng.choice(['good', 'bad', 'fine', 'film', 'plot'], 6))},{lab}"
                                  for lab in labels]
        stores[split] = featx.extract(write_lines(tmp_path / f"{split}.csv", lines), tmp_path / f"{split}.h5",
                                      model=tiny_backbone, dtype="fp32", progress=False).path
    head = "logreg:Cs=1e-07|1e-06"
    code, _, err = run_cli(capsys, "train", str(stores["train"]), "-o", str(tmp_path / "r"), "--head", head,
                           "--val", str(stores["dev"]))
    (row,) = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]
    assert code in (0, None), err
    if row["warning"] is not None:  # at an edge, and better there than beside it
        assert "(Cs=1e-07|1e-06)" in row["warning"] and '--head "logreg:Cs=' in row["warning"]
        assert f"featx: warning: {row['head']}: {row['warning']}\n" in err
    assert LogRegHead(C=1e-6).fit(*featx.open_store(stores["train"]).load()).selection_warning() is None  # given


def test_finetune_without_val_says_it_kept_the_last_epoch(capsys, tiny_bert_dir, toy_inputs, tmp_path):
    code, out, err = run_cli(capsys, "finetune", str(toy_inputs["train"]), "-o", str(tmp_path / "ft"), "--model",
                             str(tiny_bert_dir), "--max-steps", "2", "--dtype", "fp32", "--device", "cpu", "-q",
                             "--max-length", "16")
    assert code in (0, None), err
    assert "best epoch" not in out + err and "last epoch (no --val to choose by) 1 saved" in err


def test_classification_metrics_are_scikit_learns_figures_from_one_confusion_matrix():
    """Counted from the confusion matrix (a thousand heads are scored in milliseconds each), every
    figure equals scikit-learn's: classes absent from the truth, the predictions, or both included."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from featx.metrics import classification_metrics

    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(6)]
    for truth, predicted in [(rng.integers(0, 6, 500), rng.integers(0, 6, 500)),
                             (rng.integers(0, 3, 200), rng.integers(1, 5, 200)),  # 5 never occurs
                             (np.zeros(7, dtype=int), np.zeros(7, dtype=int))]:
        got = classification_metrics(truth, predicted, names)
        present = np.union1d(truth, predicted)
        precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=np.arange(6),
                                                                         zero_division=0)
        assert got["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=present, average="macro",
                                                         zero_division=0), abs=1e-12)
        assert got["weighted_f1"] == pytest.approx(f1_score(truth, predicted, labels=present, average="weighted",
                                                            zero_division=0), abs=1e-12)
        assert got["confusion_matrix"] == confusion_matrix(truth, predicted, labels=np.arange(6)).tolist()
        for row, p, r, f, s in zip(got["per_class"], precision, recall, f1, support):
            assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, s))
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(np.array([0, 6]), np.array([0, 1]), names)
