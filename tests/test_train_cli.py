"""train / evaluate / predict / demo from the command line, on tiny-model stores."""
import json

import numpy as np

import featx
from featx.heads import TrainedHead
from tests.conftest import run_cli


def no_pickles_under(folder):
    for path in folder.rglob("*"):
        if path.is_file():
            assert path.suffix not in (".pkl", ".pickle", ".joblib", ".pt", ".bin"), path
            assert not path.read_bytes()[:2].startswith(b"\x80"), f"{path} looks like a pickle"


def test_train_evaluate_predict_round_trip(capsys, tmp_path, labelled_stores):
    train, dev, test = (str(labelled_stores[s].path) for s in ("train", "dev", "test"))
    code, out, _ = run_cli(capsys, "train", train, "-o", str(tmp_path / "run"), "--head", "logreg",
                           "--head", "mlp:max_epochs=20", "--pooling", "mean", "--val", dev, "--test", test,
                           "--export", str(tmp_path / "model"))
    assert code == 0 and "| logreg-mean |" in out and "| mlp-max_epochs20-mean |" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["head"] for r in results["rows"]] == ["logreg-mean", "mlp-max_epochs20-mean"]
    # What the run peaked at (issue 33: the head record says the peak), the process's own at least its baseline.
    peaks = results["peak_memory_mb"]
    assert peaks["process"] > 50 and 50 < peaks["heads"] <= peaks["process"]  # --jobs 1: fitted in the process
    assert all(50 < row["peak_memory_mb"] <= peaks["process"] for row in results["rows"])
    no_pickles_under(tmp_path)

    code, out, _ = run_cli(capsys, "evaluate", str(tmp_path / "run" / "heads" / "logreg-mean"), test, "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics["accuracy"] == results["rows"][0]["test_accuracy"]
    assert np.array(metrics["confusion_matrix"]).sum() == 90 and len(metrics["per_class"]) == 3

    code, _, _ = run_cli(capsys, "predict", str(tmp_path / "model"), test.replace(".h5", ".csv"),
                         "-o", str(tmp_path / "pred.jsonl"), "-q")
    predicted = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    head = TrainedHead.load(tmp_path / "model" / "head")
    expected = head.predict(labelled_stores["test"])
    assert code == 0 and len(predicted) == 90
    assert [p["label"] for p in predicted] == [head.class_names[i] for i in expected]
    assert [p["id"] for p in predicted] == list(range(90))


def test_mteb_protocol_from_cli(capsys, tmp_path, labelled_stores):
    code, out, _ = run_cli(capsys, "train", str(labelled_stores["train"].path), "-o", str(tmp_path / "m"),
                           "--protocol", "mteb", "--k", "4", "--test", str(labelled_stores["test"].path))
    assert code == 0 and "mteb-logreg-k4-mean" in out and " ± " in out


def test_evaluating_on_a_mismatched_store_is_one_line_exit_2(capsys, tmp_path, labelled_stores, tiny_backbone):
    head = featx.train.train_head(labelled_stores["train"], "logreg", pooling="mean")
    head.save(tmp_path / "head")
    other = featx.extract(labelled_stores["dev"].path.with_suffix(".csv"), tmp_path / "other.h5", model=tiny_backbone,
                          pooling="mean", dtype="fp32", max_length=16, progress=False)
    other.close()
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "head"), str(tmp_path / "other.h5"))
    assert code == 2 and err.count("\n") == 1 and "another config" in err


def test_user_errors_in_train_are_one_line(capsys, tmp_path, labelled_stores):
    train = str(labelled_stores["train"].path)
    for args, message in ((["--head", "mlp:depth=2"], "no parameter 'depth'"),
                          (["--pooling", "max"], "has no 'max' features"),
                          (["--protocol", "mteb"], "pass --test")):
        code, _, err = run_cli(capsys, "train", train, "-o", str(tmp_path / "x"), *args)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_demo_runs_end_to_end_with_a_tiny_model(tmp_path, tiny_bert_dir, monkeypatch):
    import featx.demo
    import featx.train
    from featx.demo import run_demo

    writes = []
    for module in (featx.train, featx.demo):
        real = module.write_results
        monkeypatch.setattr(module, "write_results", lambda *a, real=real, **k: writes.append(a[0]) or real(*a, **k))
    lines = []
    result = run_demo(tmp_path / "demo", train_rows=300, model=str(tiny_bert_dir), device="cpu",
                      progress=False, echo=lines.append)
    assert [r["head"] for r in result["rows"]] == ["logreg-mean", "mlp-mean"]
    assert all(r["test_accuracy"] is not None and r["val_accuracy"] is not None for r in result["rows"])
    assert any(line.startswith("| head |") for line in lines)
    assert len(writes) == 1  # results.json and results.md written once, with the stage timings
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["stages"] == result["stages"]
    predictor = featx.Predictor.load(tmp_path / "demo" / "predictor")
    assert set(predictor.predict(["a fine film", "dull"])) <= {"negative", "positive"}
    assert_fitted_sklearn_classifier(predictor, ["a fine film", "dull", "a joy", "tedious"],
                                     ["positive", "negative", "positive", "negative"])
    with featx.open_store(tmp_path / "demo" / "stores" / "train.h5") as store:
        assert len(store) == 300 and store.classes == ("negative", "positive")
    no_pickles_under(tmp_path / "demo")


def assert_fitted_sklearn_classifier(predictor, texts, labels):
    """A predictor works where scikit-learn expects a fitted classifier on texts."""
    from sklearn.base import clone, is_classifier
    from sklearn.utils.validation import check_is_fitted

    assert is_classifier(predictor) and clone(predictor) is predictor
    check_is_fitted(predictor)
    assert predictor.fit(texts, labels) is predictor  # pretrained: fit learns nothing
    predicted = predictor.predict(texts)
    assert isinstance(predicted, np.ndarray) and list(predictor.classes_) == list(predictor.class_names)
    assert predictor.score(texts, labels) == np.mean(predicted == np.asarray(labels, dtype=object))
    assert np.allclose(predictor.predict_proba(texts).sum(1), 1.0)
