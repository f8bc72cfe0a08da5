"""An audio-like fourth modality registered from outside featx (tests/toy_audio.py), with an option,
a config field and a row flag of its own, goes through extract, resume, heads and predict (library
and CLI) with no file under featx/ naming it (issue 32)."""
import json

import numpy as np
import pytest

import featx
from featx.extraction.runners import make_runner
from featx.modalities import modality_named
from tests.conftest import InterruptAfter, registries_restored, run_cli
from tests.toy_audio import NAME, Wave, frames_of, load_model, register, save_model, write_waves


@pytest.fixture
def audio(tmp_path):
    with registries_restored():
        register()
        train, _ = write_waves(tmp_path / "train.audio.npz", 160, seed=0)
        test, test_waves = write_waves(tmp_path / "test.audio.npz", 60, seed=1)
        yield save_model(tmp_path / "model"), train, test, test_waves


def test_its_option_config_field_and_row_flag_travel_through_extract(audio, tmp_path):
    model, train, _, _ = audio
    with featx.extract(train, tmp_path / "a.h5", model=str(model), sample_rate=8000, progress=False) as store:
        assert store.config.modality == NAME and store.config.sample_rate == 8000 and store.complete
        assert '"sample_rate":8000' in store.config.to_json()
        module, _ = load_model(model)
        waves = [Wave(i, w, 8000, -1) for i, w in enumerate(np.load(train, allow_pickle=True)["waves"])]
        import torch

        with torch.no_grad():
            expected = np.stack([module(torch.from_numpy(frames_of(w, 8000)[0])).mean(0).numpy() for w in waves])
        np.testing.assert_allclose(store.load("mean")[0], expected, atol=1e-5)
        clipped = [int(frames_of(w, 8000)[1]) for w in waves]
        assert 0 < sum(clipped) < len(clipped) and store.row_values("clipped").tolist() == clipped
        assert store.row_flags == ("clipped",) and store.truncated is None
        fingerprint = store.fingerprint
    # The option is in the fingerprint: another rate is another store, refused over this one.
    with featx.extract(train, tmp_path / "b.h5", model=str(model), sample_rate=4000, progress=False) as other:
        assert other.fingerprint != fingerprint and other.config.sample_rate == 4000
    with pytest.raises(featx.FeatxError, match="overwrite"):
        featx.extract(train, tmp_path / "a.h5", model=str(model), sample_rate=4000, progress=False)
    with pytest.raises(featx.FeatxError, match="sample_rate must be"):
        featx.extract(train, tmp_path / "c.h5", model=str(model), sample_rate=10, progress=False)


def test_an_interrupted_extraction_resumes_to_the_uninterrupted_store(audio, tmp_path):
    model, train, _, _ = audio
    options = {"model": str(model), "sample_rate": 8000, "window_rows": 16, "progress": False}
    featurizer = modality_named(NAME).featurizer_for(
        featx.extract(train, tmp_path / "ref.h5", **options).config)
    with pytest.raises(KeyboardInterrupt):
        featx.extract(train, tmp_path / "s.h5", featurizer=featurizer, runner=InterruptAfter(make_runner(featurizer), 3),
                      window_rows=16, progress=False)
    with featx.open_store(tmp_path / "s.h5", allow_incomplete=True) as partial:
        assert not partial.complete and partial.n_done == 48
    with featx.extract(train, tmp_path / "s.h5", **options) as resumed, featx.open_store(tmp_path / "ref.h5") as ref:
        assert resumed.complete and resumed.info()["timings"]["resumed_from_row"] == 48
        assert resumed.fingerprint == ref.fingerprint
        np.testing.assert_array_equal(resumed.load("mean")[0], ref.load("mean")[0])
        np.testing.assert_array_equal(resumed.row_values("clipped"), ref.row_values("clipped"))


def test_a_head_trains_on_its_store_and_predicts_raw_waves(audio, tmp_path):
    model, train, test, test_waves = audio
    head = featx.train_head(featx.extract(train, tmp_path / "train.h5", model=str(model), sample_rate=8000,
                                          progress=False), "logreg")
    test_store = featx.extract(test, tmp_path / "test.h5", model=str(model), sample_rate=8000, progress=False)
    assert head.evaluate(test_store)["accuracy"] > 0.9
    predictor = featx.Predictor(head)
    raw = [(w, 8000) for w in test_waves]
    np.testing.assert_allclose(predictor.predict_proba(raw), head.estimator.predict_proba(test_store.load("mean")[0]),
                               atol=1e-5)
    reloaded = featx.load_predictor(predictor.save(tmp_path / "predictor"))
    assert reloaded.encoder.config.sample_rate == 8000  # read back from the config, not from an option
    assert (reloaded.predict(raw[:10]) == predictor.predict(raw[:10])).all()


def test_the_cli_takes_its_option_as_a_flag_generated_from_its_declaration(audio, tmp_path, capsys):
    model, train, test, _ = audio
    code, out, _ = run_cli(capsys, "extract", "--help")
    assert code == 0 and "--sample-rate" in out and "[default: 16000]" in out
    code, _, err = run_cli(capsys, "extract", train, "-o", tmp_path / "train.h5", "--model", model,
                           "--sample-rate", "8000", "-q")
    assert code == 0, err
    with featx.open_store(tmp_path / "train.h5") as store:
        assert store.config.sample_rate == 8000
    code, _, err = run_cli(capsys, "extract", train, "-o", tmp_path / "x.h5", "--model", model, "--sample-rate", "5")
    assert code == 2 and err.count("\n") == 1 and "--sample-rate" in err
    texts = tmp_path / "t.csv"
    texts.write_text("text,label\na,x\nb,y\n")
    code, _, err = run_cli(capsys, "extract", texts, "-o", tmp_path / "t.h5", "--sample-rate", "8000")
    assert code == 2 and err.count("\n") == 1 and "--sample-rate applies to audio inputs" in err
    assert run_cli(capsys, "train", tmp_path / "train.h5", "-o", tmp_path / "runs", "--head", "logreg",
                   "--export", tmp_path / "predictor")[0] == 0
    code, _, err = run_cli(capsys, "predict", tmp_path / "predictor", test, "-o", tmp_path / "p.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and {r["label"] for r in rows} <= {"low", "high"}
    code, out, _ = run_cli(capsys, "modalities", "--json")
    audio_entry = next(m for m in json.loads(out) if m["name"] == NAME)
    assert audio_entry["options"][0]["name"] == "sample_rate" and audio_entry["config_fields"] == ["sample_rate"]
    assert audio_entry["row_flags"] == {"clipped": "a sample beyond [-1, 1] was clipped"}
