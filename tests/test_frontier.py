"""`featx frontier` on the user's own data (issue 31): the methods in order of cost within a budget,
the Pareto rows marked, methods that would overrun it skipped with their estimate, and the best
predictor by validation exported, its test score the table's."""
import json

import numpy as np
import pytest

from featx.bench.frontier import run_frontier
from featx.data import open_input
from featx.modalities import open_source
from featx.predictor import load_predictor


@pytest.fixture(scope="module")
def emotion_splits(tmp_path_factory, data_dir):
    """240 / 120 / 120 rows of the emotion dataset (train, validation, test), as JSON lines."""
    folder = tmp_path_factory.mktemp("emotion")
    paths = {}
    for split, source, n in (("train", "train", 240), ("val", "validation", 120), ("test", "test", 120)):
        lines = (data_dir / "emotion" / f"{source}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def test_the_frontier_measures_marks_and_exports_the_best_by_validation(tmp_path, emotion_splits, cli):
    result = cli("frontier", emotion_splits["train"], "--val", emotion_splits["val"], "--test", emotion_splits["test"],
                 "-o", tmp_path / "out", "--budget", "4m")
    assert result.code == 0, result.err
    document = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert document["task"] == "single"  # (no timed assertion: the budget rule is the skip test below)
    measured = {row["method"]: row for row in document["rows"] if row.get("score") is not None}
    assert {"TF-IDF 1-2-grams + logreg", "frozen MiniLM + logreg", "hybrid (TF-IDF + frozen MiniLM)"} <= set(measured)
    assert all("skipped" in row for row in document["rows"] if row.get("score") is None)
    assert any(row["pareto1"] for row in measured.values()) and "●" in result.out
    exported = document["exported"]
    row = measured[exported["method"]]  # the exported method is a row of the table, the best by validation
    predictor = load_predictor(exported["folder"])
    assert predictor.evaluate(open_input(emotion_splits["test"]))["accuracy"] == pytest.approx(row["score"], abs=1e-9)
    assert (tmp_path / "out" / "frontier.md").read_text().startswith("### ")


def test_methods_over_the_budget_are_skipped_with_their_estimate(tmp_path, emotion_splits):
    sources = {split: open_input(path) for split, path in emotion_splits.items()}
    document = run_frontier(sources["train"], sources["test"], tmp_path / "out", val=sources["val"], budget_s=1.0,
                            echo=lambda line: None)
    skipped = {row["method"]: row["skipped"] for row in document["rows"] if "skipped" in row}
    # Frozen MiniLM always runs (every estimate is made from it); everything after it is over a 1 s budget.
    assert "frozen MiniLM + logreg" not in skipped
    for method in ("hybrid (TF-IDF + frozen MiniLM)", "cached blocks:k=2", "fine-tune top-2"):
        assert skipped[method].startswith("over the budget: about "), skipped


def test_a_checkpoint_export_that_fails_midway_leaves_no_predictor(tmp_path, monkeypatch):
    import featx.bench.frontier as frontier

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "finetune.json").write_text("{}")

    def half_copy(source, target, dirs_exist_ok=False):
        (target / "finetune.json").write_text("{")  # one file half written, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(frontier.shutil, "copytree", half_copy)
    with pytest.raises(Exception, match="No space left on device"):
        frontier._copy_whole(tmp_path / "ck", tmp_path / "out" / "predictor")
    assert not (tmp_path / "out" / "predictor").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no scratch folder left


def test_the_frontier_on_images_runs_the_image_methods(tmp_path, cli):
    """Class folders of images: the frozen EfficientNet-Lite0 head and its top-2 fine-tune, no text method."""
    from PIL import Image

    rng = np.random.default_rng(0)
    tints = {"red": (220, 60, 60), "green": (60, 200, 80), "blue": (60, 80, 220)}
    for split, n in (("train", 10), ("val", 4), ("test", 4)):
        for name, tint in tints.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(tint) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.jpg", quality=90)
    result = cli("frontier", tmp_path / "train", "--val", tmp_path / "val", "--test", tmp_path / "test",
                 "-o", tmp_path / "out", "--budget", "5m")
    assert result.code == 0, result.err
    document = json.loads((tmp_path / "out" / "frontier.json").read_text())
    methods = [row["method"] for row in document["rows"]]
    assert methods == ["frozen EfficientNet-Lite0 + logreg", "fine-tune top-2"], document["rows"]
    measured = [row for row in document["rows"] if row.get("score") is not None]
    assert measured[0]["score"] == 1.0 and all(row["backbone"] == "EfficientNet-Lite0" for row in document["rows"])
    exported = document["exported"]
    row = next(r for r in measured if r["method"] == exported["method"])
    predictor = load_predictor(exported["folder"])
    assert predictor.evaluate(open_source(tmp_path / "test"))["accuracy"] == pytest.approx(row["score"], abs=1e-9)


def test_the_frontier_refuses_texts_beside_images(tmp_path, cli, emotion_splits, cifar_few):
    result = cli("frontier", emotion_splits["train"], "--test", cifar_few, "-o", tmp_path / "out")
    assert result.code == 2 and "as the same kind of input" in result.err and not (tmp_path / "out").exists()
