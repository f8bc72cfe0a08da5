"""A third modality registered from outside featx (tests/toy_modality: fixed-length float vectors
through a tiny torch module) goes through extract, resume, heads and predict, with no featx module
naming it: the registry is the only seam a new modality needs."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import featx
from featx.modalities import MODALITIES
from tests.conftest import kill_part_way, registries_restored, run_cli, run_to_end
from tests.toy_modality import CLIP, NAME, load_tiny_model, register, save_tiny_model

WIDTH, HIDDEN = 12, 8


@pytest.fixture
def vectors(tmp_path):
    """The toy modality registered for one test (the registry restored after), a model and two inputs."""
    with registries_restored():
        register()
        yield _vectors(tmp_path)


def _vectors(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, WIDTH)) * 3

    def split(name: str, n: int) -> Path:
        y = rng.integers(0, 2, size=n)
        x = (centres[y] + rng.normal(size=(n, WIDTH))).astype(np.float32)
        np.savez(tmp_path / name, x=x, y=np.array(["neg", "pos"])[y])
        return tmp_path / name

    return save_tiny_model(tmp_path / "model", WIDTH, HIDDEN), split("train.npz", 300), split("test.npz", 80)


def test_extract_resume_head_and_predict(vectors, tmp_path):
    model, train, test = vectors
    store = featx.extract(train, tmp_path / "train.h5", model=str(model), progress=False)
    with store:
        assert store.config.modality == NAME and store.complete and store.n_done == 300
        vectors_ = store.load("mean")[0]
        # The store holds the model's own output for every row, in input order.
        module, _, _ = load_tiny_model(model)
        import torch

        x = np.load(train)["x"]
        with torch.no_grad():
            expected = module(torch.from_numpy(np.clip(x, -CLIP, CLIP))).numpy()
        np.testing.assert_allclose(vectors_, expected, atol=1e-6)
        # Its own row flag travels to the store by name: no "truncated", a "clipped" row for each clipped vector.
        clipped = (np.abs(x).max(1) > CLIP).astype(np.uint8)
        assert 0 < clipped.sum() < len(x) and store.row_values("clipped").tolist() == clipped.tolist()
        assert store.truncated is None
        fingerprint = store.fingerprint
    # A rerun returns the store untouched.
    assert featx.extract(train, tmp_path / "train.h5", model=str(model), progress=False).fingerprint == fingerprint
    head = featx.train_head(featx.open_store(tmp_path / "train.h5"), "logreg")
    test_store = featx.extract(test, tmp_path / "test.h5", model=str(model), progress=False)
    assert head.evaluate(test_store)["accuracy"] > 0.9
    predictor = featx.Predictor(head)
    x_test = np.load(test)["x"]
    np.testing.assert_allclose(predictor.predict_proba(list(x_test)),
                               head.estimator.predict_proba(test_store.load(head.pooling)[0]), atol=1e-6)
    saved = predictor.save(tmp_path / "predictor")
    assert (featx.load_predictor(saved).predict(list(x_test[:5])) == predictor.predict(list(x_test[:5]))).all()


def test_a_killed_extraction_resumes_to_the_uninterrupted_store(vectors, tmp_path):
    model, train, _ = vectors
    script = ("import sys, featx; from tests.toy_modality import register; register(); "
              "featx.extract(sys.argv[1], sys.argv[2], model=sys.argv[3], window_rows=8, progress=False)")
    command = [sys.executable, "-c", script, str(train), str(tmp_path / "s.h5"), str(model)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1",
           **{k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}}
    kill_part_way(command, env, tmp_path / "s.h5", delays=(0.05, 0.1, 0.2))
    run_to_end(command, env)
    reference = featx.extract(train, tmp_path / "ref.h5", model=str(model), window_rows=8, progress=False)
    with featx.open_store(tmp_path / "s.h5") as resumed, reference:
        assert resumed.complete
        np.testing.assert_array_equal(resumed.ids, reference.ids)
        np.testing.assert_array_equal(resumed.load("mean")[0], reference.load("mean")[0])


def test_the_cli_extracts_trains_and_predicts_it(vectors, tmp_path, capsys):
    model, train, test = vectors
    assert run_cli(capsys, "extract", train, "-o", tmp_path / "train.h5", "--model", model, "-q")[0] == 0
    code, _, err = run_cli(capsys, "train", tmp_path / "train.h5", "-o", tmp_path / "runs", "--head", "logreg",
                             "--export", tmp_path / "predictor")
    assert code == 0, err
    code, _, err = run_cli(capsys, "predict", tmp_path / "predictor", test, "-o", tmp_path / "p.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and {r["label"] for r in rows} <= {"neg", "pos"}


def test_options_it_does_not_take_are_one_line(vectors, tmp_path, capsys):
    model, train, _ = vectors
    code, _, err = run_cli(capsys, "extract", train, "-o", tmp_path / "s.h5", "--model", model, "--max-length", "8")
    assert code == 2 and err.count("\n") == 1
    assert "--max-length applies to text inputs" in err and "read as vector inputs" in err
    code, _, err = run_cli(capsys, "finetune", train, "-o", tmp_path / "ft")
    assert code == 2 and err.count("\n") == 1 and "--model is needed: vector inputs have no default model" in err
    code, _, err = run_cli(capsys, "finetune", train, "-o", tmp_path / "ft", "--model", model)
    assert code == 2 and err.count("\n") == 1 and "vector inputs cannot be fine-tuned" in err
    assert not (tmp_path / "ft").exists()


def test_a_second_modality_of_a_registered_name_is_refused():
    """register_modality silently replaced an entry of the same name (issue 32)."""
    from featx.modalities import register_modality

    text = MODALITIES["text"]
    with pytest.raises(ValueError, match="'text' is registered already"):
        register_modality(text)
    assert register_modality(text, replace=True) is text and MODALITIES["text"] is text


def test_its_own_row_flag_survives_shards_merge_and_export(vectors, tmp_path):
    """The 'clipped' flag the toy modality declares is found by name where stores are joined and
    written out: merged shards keep it, and the parquet export has a column of it."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from featx.extraction.shards import shard_path
    from featx.store.export import export_store
    from featx.store.merge import merge_shards

    model, train, _ = vectors
    whole = featx.extract(train, tmp_path / "whole.h5", model=str(model), window_rows=64, progress=False)
    expected = whole.row_values("clipped").tolist()
    for i in range(2):
        featx.extract(train, tmp_path / "s.h5", model=str(model), window_rows=64, shard=(i, 2), progress=False).close()
    merged = featx.open_store(merge_shards([shard_path(tmp_path / "s.h5", i, 2) for i in range(2)], tmp_path / "m.h5"))
    assert merged.row_flags == ("clipped",) and merged.row_values("clipped").tolist() == expected
    folder = export_store(tmp_path / "whole.h5", tmp_path / "export", fmt="parquet")
    table = pq.read_table(folder / "vectors.parquet")
    assert table.column("clipped").to_pylist() == [bool(v) for v in expected]
