"""Multi-label and regression targets (issue 31): read from files, lists and DataFrames, stored as
an indicator or a float matrix with the task recorded, trained by every head kind that fits
them (thresholds chosen on validation, saved with the head), scored with each task's metrics;
bad targets are one line and exit 2."""
import csv
import json

import numpy as np
import pytest

import featx
from featx.heads import HEAD_KINDS, TrainedHead, make_head
from featx.metrics import choose_thresholds, regression_metrics, task_of
from featx.train import HeadSpec, train_and_save


@pytest.fixture(scope="module")
def goemotions(tmp_path_factory, data_dir):
    """600 + 300 GoEmotions rows (train, dev) as MiniLM stores, 28 classes named by emotions.txt."""
    folder = tmp_path_factory.mktemp("goemotions")
    names = data_dir / "goemotions" / "emotions.txt"
    stores = {}
    for split, n in (("train", 600), ("dev", 300)):
        lines = (data_dir / "goemotions" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:n]
        path = folder / f"{split}.tsv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stores[split] = _cli_extract(path, folder / f"{split}.h5", "--no-header", "--text-column", "0",
                                     "--label-column", "1", "--multi-label", ",", "--label-names", names)
        stores[f"{split}_texts"] = [line.split("\t")[0] for line in lines]
    return stores


def _cli_extract(path, out, *args):
    from featx.cli import main

    with pytest.raises(SystemExit) as done:
        main(["extract", str(path), "-o", str(out), "-q", "--backend", "torch", "--dtype", "fp32",
              *(str(a) for a in args)])
    assert done.value.code == 0
    return featx.open_store(out)


@pytest.fixture(scope="module")
def emobank(tmp_path_factory, data_dir):
    """EmoBank's first 500 train and 200 dev rows as its own CSV (the split column kept)."""
    path = data_dir / "emobank" / "emobank.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["split"] == "train"][:500] + [r for r in rows if r["split"] == "dev"][:200]
    out = tmp_path_factory.mktemp("emobank") / "emobank.csv"
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return out


def test_a_multi_label_store_holds_an_indicator_and_every_named_class(goemotions, data_dir):
    store = goemotions["train"]
    names = tuple((data_dir / "goemotions" / "emotions.txt").read_text().split())
    assert store.task == "multi" and store.classes == names
    labels = store.labels
    assert labels.dtype == np.uint8 and labels.shape == (600, 28)
    first = (data_dir / "goemotions" / "train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")[1]
    assert np.flatnonzero(labels[0]).tolist() == sorted(int(i) for i in first.split(","))
    assert json.loads(store.header.input)["task"] == "multi"
    info = store.info()
    assert info["task"] == "multi" and sum(info["label_counts"].values()) == int(labels.sum())


def test_every_multi_label_head_trains_saves_and_loads(tmp_path, goemotions):
    train, dev = goemotions["train"], goemotions["dev"]
    specs = [HeadSpec("logreg", {"Cs": (0.01, 0.1, 1.0)}), HeadSpec("ridge"), HeadSpec("knn"),
             HeadSpec("mlp", {"max_epochs": 30}), HeadSpec("hybrid", {"Cs": (0.1, 1.0), "weights": (0.5, 1.0)})]
    texts = {"train": goemotions["train_texts"], "val": goemotions["dev_texts"], "test": goemotions["dev_texts"]}
    run = train_and_save(train, specs, tmp_path / "runs", val=dev, test=dev, texts=texts)
    prevalence = dev.labels.mean(0)
    everything = float(np.mean(2 * prevalence / (1 + prevalence)))  # macro-F1 of calling every label on every row
    for head, row in zip(run.heads, run.rows):
        assert head.task == "multi" and row["head_task"] == "multi"
        val = head.metrics["val"]
        # The thresholds were chosen on these rows: never worse than 0.5 on them, and the gain is recorded.
        assert val["threshold_gain"] >= 0 and val["macro_f1"] == pytest.approx(val["macro_f1_at_0.5"]
                                                                                + val["threshold_gain"], abs=1e-6)
        assert head.estimator.thresholds_.shape == (28,)
        # Well above calling every label on every row (a cut its threshold choice could always make).
        assert val["macro_f1"] > 1.5 * everything, head.name
        loaded = TrainedHead.load(tmp_path / "runs" / "heads" / head.name)
        assert np.array_equal(loaded.estimator.thresholds_, head.estimator.thresholds_)
        test_texts = texts["test"] if "texts" in head.estimator.reads else None
        assert np.array_equal(loaded.predict(dev, test_texts), head.predict(dev, test_texts)), head.name
        assert loaded.evaluate(dev, test_texts)["macro_f1"] == pytest.approx(head.metrics["test"]["macro_f1"])


def test_regression_heads_learn_emobank(tmp_path, emobank):
    stores = {split: _cli_extract(emobank, tmp_path / f"{split}.h5", "--where", f"split={split}",
                                  "--target", "V,A,D", "--model", "all-MiniLM-L6-v2") for split in ("train", "dev")}
    train, dev = stores["train"], stores["dev"]
    assert train.task == "regression" and train.classes == ("V", "A", "D") and len(train) == 500 and len(dev) == 200
    assert train.labels.dtype == np.float64 and train.labels.shape == (500, 3)
    with open(emobank, encoding="utf-8", newline="") as f:
        first = next(csv.DictReader(f))
    assert train.labels[0].tolist() == [float(first[k]) for k in ("V", "A", "D")]
    texts = [r["text"] for r in csv.DictReader(open(emobank, encoding="utf-8", newline=""))]
    specs = [HeadSpec("ridge"), HeadSpec("knn"), HeadSpec("mlp", {"max_epochs": 40}),
             HeadSpec("hybrid", {"Cs": (0.1, 1.0), "weights": (0.5, 1.0)})]
    run = train_and_save(train, specs, tmp_path / "runs", val=dev, test=dev,
                         texts={"train": texts[:500], "val": texts[500:], "test": texts[500:]})
    by_kind = {row["kind"]: row for row in run.rows}
    assert by_kind["ridge"]["test_mean_pearson"] > 0.3  # valence, arousal and dominance are learnt, not guessed
    for head in run.heads:
        loaded = TrainedHead.load(tmp_path / "runs" / "heads" / head.name)
        reads_texts = "texts" in head.estimator.reads
        predicted = loaded.predict(dev, texts[500:] if reads_texts else None)
        assert predicted.shape == (200, 3) and predicted.dtype == np.float64
        assert np.allclose(predicted, head.predict(dev, texts[500:] if reads_texts else None))


def test_logreg_refuses_regression_and_names_the_heads_that_fit_it():
    with pytest.raises(featx.FeatxError, match=r"logreg head does not fit regression labels: use .*ridge"):
        make_head("logreg").fit(np.zeros((4, 2)), np.zeros((4, 1)))
    assert {kind for kind, cls in HEAD_KINDS.items() if "regression" in cls.tasks} >= {"ridge", "mlp", "knn", "hybrid"}


def test_json_lists_and_01_columns_are_multi_label_too(tmp_path, tiny_backbone):
    rows = [{"text": "joy and awe", "tags": ["joy", "awe"]}, {"text": "plain", "tags": ["calm"]},
            {"text": "awe", "tags": ["awe"]}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with featx.extract(jsonl, tmp_path / "a.h5", model=tiny_backbone, progress=False, label_column="tags",
                       multi_label=",") as store:
        assert store.classes == ("awe", "calm", "joy")
        assert store.labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    columns = {"text": [r["text"] for r in rows], "awe": [1, 0, 1], "calm": ["0", "1", "0"], "joy": [True, False, False]}
    with featx.extract(columns, tmp_path / "b.h5", model=tiny_backbone, progress=False,
                       label_columns=["awe", "calm", "joy"]) as store:
        assert store.classes == ("awe", "calm", "joy") and store.labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    with featx.extract([r["text"] for r in rows], tmp_path / "c.h5", model=tiny_backbone, progress=False,
                       labels=[r["tags"] for r in rows]) as store:  # a list of label lists beside the texts
        assert store.task == "multi" and store.labels.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_a_dataframe_gives_a_regression_store(tmp_path, tiny_backbone):
    pd = pytest.importorskip("pandas", reason="featx[pandas] is not installed")
    frame = pd.DataFrame({"text": ["a", "b", "c"], "rating": [1, 7.5, 10]})
    with featx.extract(frame, tmp_path / "r.h5", model=tiny_backbone, progress=False, target="rating") as store:
        assert store.task == "regression" and store.labels.tolist() == [[1.0], [7.5], [10.0]]


def test_single_label_stores_keep_their_input_description(tmp_path, tiny_backbone):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\ngood,pos\nbad,neg\n", encoding="utf-8")
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, progress=False) as store:
        assert "task" not in json.loads(store.header.input) and store.task == "single"
        assert "task" not in store._file["labels"].attrs  # laid out exactly as before tasks existed


@pytest.mark.parametrize("lines, args, message", [
    (["text,label,score", "a,x,1"], ["--label-column", "label", "--target", "score"], "give one of them"),
    (["text,score", "a,1", "b,nan"], ["--target", "score"], "row 2: target 'score' is 'nan'"),
    (["text,score", "a,1", "b,inf"], ["--target", "score"], "finite number"),
    (["text,score", "a,1", "b,high"], ["--target", "score"], "not a number"),
    (["text\tlabel", "a\t2,11", "b\t3;4"], ["--multi-label", ","], "labels separated by ';'"),
    (["text\tlabel", "a\t2,11", "b\t"], ["--multi-label", ","], "row 2: no label"),
    (["text\tlabel", "a\t2,,11"], ["--multi-label", ","], "an empty label"),
    (["text,a,b", "x,1,2"], ["--label-columns", "a,b"], "reads 0/1 columns"),
])
def test_bad_targets_are_one_line_and_exit_2(tmp_path, cli, tiny_bert_dir, lines, args, message):
    path = tmp_path / ("rows.tsv" if "\t" in lines[0] else "rows.csv")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("extract", path, "-o", tmp_path / "out.h5", "--model", tiny_bert_dir, "-q", *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "out.h5").exists()


def test_an_empty_multi_label_cell_is_kept_when_allowed(tmp_path, tiny_backbone):
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\na\t2,11\nb\t\n", encoding="utf-8")
    with featx.extract(path, tmp_path / "e.h5", model=tiny_backbone, progress=False, multi_label=",",
                       allow_empty_labels=True) as store:
        assert store.labels.tolist() == [[1, 1], [0, 0]]


def test_in_memory_mistakes_are_one_line(tmp_path, cli, tiny_backbone, tiny_bert_dir):
    pd = pytest.importorskip("pandas", reason="featx[pandas] is not installed")
    datasets = pytest.importorskip("datasets", reason="featx[datasets] is not installed")
    with pytest.raises(featx.FeatxError, match="has no column 'text'; it has: body"):
        featx.extract(pd.DataFrame({"body": ["a"]}), tmp_path / "x.h5", model=tiny_backbone, progress=False)
    saved = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"]})}).save_to_disk(str(saved))
    result = cli("extract", f"hf:{saved}:test", "-o", tmp_path / "y.h5", "--model", tiny_bert_dir, "-q")
    assert result.code == 2 and "has no split 'test' (splits: train)" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_thresholds_maximise_each_labels_f1():
    scores = np.array([[0.9, 0.2], [0.6, 0.3], [0.4, 0.8], [0.1, 0.7]])
    truth = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.uint8)
    thresholds = choose_thresholds(scores, truth)
    assert thresholds[0] == pytest.approx(0.5) and thresholds[1] == pytest.approx(0.75)
    assert task_of(truth) == "multi" and task_of(scores) == "regression" and task_of(np.array([0, 1])) == "single"
    metrics = regression_metrics(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.5], [2.9]]), ["v"])
    assert metrics["mean_pearson"] > 0.9 and metrics["per_target"][0]["rmse"] == pytest.approx(np.sqrt(0.26 / 3))


def test_predictors_give_label_sets_and_values_and_score_like_their_heads(tmp_path, goemotions, data_dir, cli):
    from featx.data import open_input
    from featx.predictor import Predictor

    train, dev = goemotions["train"], goemotions["dev"]
    run = train_and_save(train, [HeadSpec("logreg", {"Cs": (0.1, 1.0)})], tmp_path / "runs", val=dev, test=dev,
                         export=tmp_path / "predictor")
    predictor = Predictor.load(tmp_path / "predictor")
    assert predictor.task == "multi" and predictor.thresholds.shape == (28,)
    texts = goemotions["dev_texts"][:20]
    predicted = predictor.predict(texts)
    assert all(isinstance(row, tuple) and set(row) <= set(train.classes) for row in predicted)
    assert predictor.predict_proba(texts).shape == (20, 28)
    dev_tsv = tmp_path / "dev.tsv"
    dev_tsv.write_text("\n".join((data_dir / "goemotions" / "dev.tsv").read_text(encoding="utf-8").splitlines()[:300])
                       + "\n", encoding="utf-8")
    source = open_input(dev_tsv, header=False, text_column="0", label_column="1", multi_label=",",
                        label_names=data_dir / "goemotions" / "emotions.txt")
    from_input = predictor.evaluate(source)
    assert from_input["macro_f1"] == pytest.approx(run.best.metrics["test"]["macro_f1"], abs=1e-9)
    result = cli("predict", tmp_path / "predictor", dev_tsv, "-o", tmp_path / "p.jsonl", "--no-header",
                 "--text-column", "0", "--label-column", "1", "--multi-label", ",", "--label-names",
                 data_dir / "goemotions" / "emotions.txt", "-q")
    assert result.code == 0, result.err
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "labels", "gold", "scores"} and len(first["scores"]) == 28
    result = cli("evaluate", tmp_path / "predictor", dev_tsv, "--no-header", "--text-column", "0", "--label-column",
                 "1", "--multi-label", ",", "--label-names", data_dir / "goemotions" / "emotions.txt")
    assert result.code == 0 and "macro-F1" in result.out and "admiration" in result.out, result.err


def test_relabel_gives_one_cache_other_labels_without_copying_vectors(tmp_path, cli, tiny_bert_dir):
    rows = [{"text": f"review {i} " + "good " * (i % 5), "label": i % 2, "rating": 1 + i % 10} for i in range(40)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert cli("extract", path, "-o", tmp_path / "sentiment.h5", "--model", tiny_bert_dir, "-q").code == 0
    result = cli("relabel", tmp_path / "sentiment.h5", path, "-o", tmp_path / "rating.h5", "--target", "rating")
    assert result.code == 0, result.err
    with featx.open_store(tmp_path / "sentiment.h5") as original, featx.open_store(tmp_path / "rating.h5") as rating:
        assert rating.task == "regression" and rating.labels[:, 0].tolist() == [r["rating"] for r in rows]
        assert np.array_equal(rating.load()[0], original.load()[0]) and rating.fingerprint == original.fingerprint
        assert rating._file["features/mean"].is_virtual  # the vectors are the original's, not a copy
    assert (tmp_path / "rating.h5").stat().st_size < (tmp_path / "sentiment.h5").stat().st_size / 2
    result = cli("train", tmp_path / "rating.h5", "-o", tmp_path / "runs", "--head", "ridge")
    assert result.code == 0 and "mean r" in (tmp_path / "runs" / "results.md").read_text()
    other = tmp_path / "other.jsonl"  # one changed text: refused, naming the row
    other.write_text(path.read_text().replace("review 7 ", "review 7!"), encoding="utf-8")
    result = cli("relabel", tmp_path / "sentiment.h5", other, "-o", tmp_path / "x.h5", "--target", "rating")
    assert result.code == 2 and "row 8 of" in result.err and not (tmp_path / "x.h5").exists()
    (tmp_path / "sentiment.h5").rename(tmp_path / "moved.h5")  # the view names what it reads
    with pytest.raises(featx.FeatxError, match="which is missing"):
        featx.open_store(tmp_path / "rating.h5")


def test_the_blocks_head_trains_multi_label_and_regression_on_token_states(tmp_path, tiny_backbone):
    rng = np.random.default_rng(0)
    words = {"joy": ["great", "lovely"], "awe": ["vast", "sublime"], "calm": ["still", "quiet"]}
    rows = []
    for i in range(160):
        tags = [tag for tag in words if rng.random() < 0.4] or ["calm"]
        text = " ".join(w for tag in tags for w in rng.choice(words[tag], size=2)) + f" {i % 7}"
        rows.append({"text": text, "tags": tags, "score": float(len(tags)) + 0.1 * (i % 3)})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    options = {"model": tiny_backbone, "dtype": "fp32", "cache_layer": 1, "cache_dtype": "float32", "progress": False}
    multi = featx.extract(path, tmp_path / "multi.h5", label_column="tags", multi_label=",", **options)
    scored = featx.extract(path, tmp_path / "scored.h5", target="score", **options)
    for store, task in ((multi, "multi"), (scored, "regression")):
        run = train_and_save(store, [HeadSpec("blocks", {"epochs": 2, "lr": 1e-3})], tmp_path / task, val=store,
                             test=store)
        head = run.heads[0]
        assert head.task == task and head.estimator.best_epoch_ in (1, 2)
        loaded = TrainedHead.load(tmp_path / task / "heads" / head.name)
        assert np.allclose(loaded.predict(store), head.predict(store))
        if task == "multi":
            assert head.estimator.thresholds_.shape == (3,) and "val_macro_f1" in head.estimator.history_[0]
        else:
            assert head.predict(store).shape == (160, 1) and head.metrics["test"]["mean_pearson"] is not None


@pytest.mark.parametrize("targets", ["V", "V,A,D"])
def test_the_tfidf_baseline_fits_one_or_several_targets(emobank, targets):
    from featx.bench.tfidf import tfidf_baseline
    from featx.data import open_input

    train, dev = (open_input(emobank, target=targets, where=f"split={split}") for split in ("train", "dev"))
    run = tfidf_baseline(train, dev, dev)
    assert len(run["metrics"]["per_target"]) == len(targets.split(",")) and run["metrics"]["mean_pearson"] > 0.1
    assert run["alpha"] in [point["alpha"] for point in run["curve"]]


def test_a_relabel_that_fails_midway_leaves_no_output_and_the_store_untouched(tmp_path, tiny_backbone, monkeypatch):
    import featx.relabel
    from featx.data import open_input

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}", "score": i}) + "\n" for i in range(30)), encoding="utf-8")
    featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, progress=False).close()
    before, listed = (tmp_path / "s.h5").read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    real = featx.relabel.write_view

    def half_then_full_disk(partial, *args, **kwargs):
        real(partial, *args, **kwargs)  # the whole view is written under its scratch name...
        raise OSError(28, "No space left on device")  # ...and the disk fills before the rename

    monkeypatch.setattr(featx.relabel, "write_view", half_then_full_disk)
    with pytest.raises(featx.FeatxError, match="No space left on device; nothing was written there"):
        featx.relabel.relabel_store(tmp_path / "s.h5", open_input(path, target="score"), tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == listed  # no scratch file left beside them
    assert (tmp_path / "s.h5").read_bytes() == before


def test_multi_label_logreg_streams_to_the_same_choice(goemotions):
    """Over the memory budget the multi-label logreg head reads its rows from disk a block at a time
    (it loaded them whole, with a warning): the same C, thresholds and weights to the tolerance."""
    import warnings

    from featx.errors import FeatxWarning
    from featx.train import HeadSpec, train_heads

    runs = {}
    for budget in ("64K", "1G"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FeatxWarning)  # nothing held in memory over the budget
            heads, rows = train_heads(goemotions["train"], [HeadSpec("logreg")], ["mean"], val=goemotions["dev"],
                                      memory_budget=budget)
        runs[budget] = (heads[0].estimator, rows[0])
    (streamed, s_row), (loaded, l_row) = runs["64K"], runs["1G"]
    assert streamed.C_ == loaded.C_ and streamed.curve_ and s_row["chosen"] == l_row["chosen"]
    np.testing.assert_allclose([p["score"] for p in streamed.curve_], [p["score"] for p in loaded.curve_], atol=0.01)
    # The coefficients to the tolerance; the intercepts of the rarest labels sit in a flat valley (logits near
    # -6), where the two fits stopped up to 0.04 apart on the AVX2-only EPYC: their probabilities agree instead.
    np.testing.assert_allclose(streamed.weights_[:-1], loaded.weights_[:-1], rtol=1e-3, atol=1e-3)
    X_dev, _ = goemotions["dev"].load("mean")
    np.testing.assert_allclose(streamed.predict_proba(X_dev), loaded.predict_proba(X_dev), atol=1e-3)
    assert np.mean(streamed.predict(X_dev) == loaded.predict(X_dev)) > 0.999
