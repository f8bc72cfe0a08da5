"""MTEB's classification protocol, exactly: the sampler by hand, the score against a published number."""
import numpy as np
import pytest

import featx
from featx.errors import ParameterError
from featx.mteb import MTEB_TASKS, mteb_samples, mteb_task


def test_the_sampler_matches_a_hand_computed_case():
    # np.random.seed(42); np.random.shuffle(arange(8)) gives [1, 5, 0, 7, 2, 4, 3, 6]; the first row of
    # each label in that order is 1 (label 1), 5 (label 0), 7 (label 2). Experiment 2 reseeds and shuffles
    # that order again, the same permutation applied twice: [5, 4, 1, 6, 0, 2, 7, 3] -> 5, 4, 1.
    y = np.array([0, 1, 0, 1, 2, 0, 1, 2])
    first, second = mteb_samples(y, samples_per_label=1, experiments=2)
    assert first.tolist() == [1, 5, 7] and second.tolist() == [5, 4, 1]


def _mteb_reference(y, k, experiments, seed=42):
    """MTEB 1.x's loop as written there: the global generator, an index array shuffled in place."""
    state = np.random.get_state()
    try:
        idxs, picked = np.arange(len(y)), []
        for _ in range(experiments):
            np.random.seed(seed)
            np.random.shuffle(idxs)
            counts: dict[int, int] = {}
            rows = []
            for i in idxs:
                if counts.get(y[i], 0) < k:
                    rows.append(i)
                    counts[y[i]] = counts.get(y[i], 0) + 1
            picked.append(rows)
        return picked
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("k, experiments, n_labels", [(8, 10, 77), (32, 10, 2), (3, 4, 5)])
def test_the_sampler_equals_mtebs_loop_and_leaves_the_global_generator_alone(k, experiments, n_labels):
    y = np.random.default_rng(n_labels).integers(0, n_labels, size=1500)
    before = np.random.get_state()[1].copy()
    ours = mteb_samples(y, k, experiments)
    assert np.array_equal(np.random.get_state()[1], before)
    assert [rows.tolist() for rows in ours] == [list(map(int, rows)) for rows in _mteb_reference(y, k, experiments)]


# Every preset as mteb 1.12.94 sets it (task file under mteb/tasks/Classification/, line of each
# value; unset values are AbsTaskClassification's defaults, 8 per label and 10 experiments, at
# mteb/abstasks/AbsTaskClassification.py:47 and :52): (rows per label, experiments, splits).
PINNED = {
    "AmazonCounterfactualClassification": (32, 10, ("validation", "test")),  # multilingual/…:23, :71-72
    "AmazonPolarityClassification": (8, 10, ("test",)),  # eng/…:20
    "AmazonReviewsClassification": (8, 10, ("validation", "test")),  # multilingual/…:21
    "Banking77Classification": (8, 10, ("test",)),  # eng/…:20
    "EmotionClassification": (16, 10, ("validation", "test")),  # eng/…:20, :63-64
    "ImdbClassification": (8, 10, ("test",)),  # eng/…:20
    "MassiveIntentClassification": (8, 10, ("validation", "test")),  # multilingual/…:75
    "MassiveScenarioClassification": (8, 10, ("validation", "test")),  # multilingual/…:75
    "MTOPDomainClassification": (8, 10, ("validation", "test")),  # multilingual/…:30
    "MTOPIntentClassification": (8, 10, ("validation", "test")),  # multilingual/…:30
    "ToxicConversationsClassification": (16, 10, ("test",)),  # eng/…:20, :49-50
    "TweetSentimentExtractionClassification": (32, 10, ("test",)),  # eng/…:20, :49-50
}


def test_every_task_preset_is_pinned_to_mteb_1_12s_task_files_and_an_unknown_task_is_one_line():
    assert {name: (t.samples_per_label, t.experiments, t.eval_splits) for name, t in MTEB_TASKS.items()} == PINNED
    with pytest.raises(ParameterError, match="task 'Banking77' is not an MTEB"):
        mteb_task("Banking77")


def test_banking77_reproduces_the_published_mteb_score_from_a_default_store(data_dir, tmp_path, minilm):
    """all-MiniLM-L6-v2 on Banking77Classification, MTEB 1.x: 80.04 accuracy (published)."""
    stores = {}
    for split in ("train", "test"):
        stores[split] = featx.extract(data_dir / "banking77" / f"{split}.csv", tmp_path / f"{split}.h5", model=minilm,
                                      text_column="text", label_column="category", dtype="fp32", progress=False)
    assert stores["train"].config.normalize and stores["train"].poolings == ("mean",)  # the model's own embedding
    (row,) = featx.mteb_protocol(stores["train"], stores["test"], task="Banking77Classification", seeds=0)
    assert len(stores["train"]) == 10003 and len(stores["test"]) == 3080 and len(stores["train"].classes) == 77
    assert abs(100 * row["test_accuracy"] - 80.04) <= 0.1, row["test_accuracy"]
    assert row["models_own_embedding"] and not row["normalised_at_train_time"]


def test_featx_train_runs_a_task_preset_from_the_command_line(labelled_stores, tmp_path, capsys):
    import json

    from tests.conftest import run_cli

    code, out, err = run_cli(capsys, "train", str(labelled_stores["train"].path), "-o", str(tmp_path / "m"),
                             "--protocol", "mteb", "--task", "TweetSentimentExtractionClassification", "--seeds", "2",
                             "--pooling", "mean", "--test", str(labelled_stores["test"].path))
    assert code in (0, None), err
    results = json.loads((tmp_path / "m" / "results.json").read_text())
    (row,) = results["rows"]
    assert results["task"] == row["task"] == "TweetSentimentExtractionClassification"
    assert (row["k"], row["experiments"], row["seed_spread"]["seeds"]) == (32, 10, 2)
    assert "mteb-logreg-k32-mean" in out
    code, _, err = run_cli(capsys, "train", str(labelled_stores["train"].path), "-o", str(tmp_path / "x"),
                           "--protocol", "mteb", "--task", "NoSuchTask", "--test", str(labelled_stores["test"].path))
    assert code == 2 and "--task 'NoSuchTask' is not an MTEB" in err and err.count("\n") == 1
