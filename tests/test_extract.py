"""The engine and the store on a tiny random BERT: order, resume, fingerprints, layout."""
import h5py
import numpy as np
import pytest

import featx
from featx.encoding import Encoder
from featx.errors import FeatxError
from featx.extraction.runners import cpu_workers
from featx.featurizers import TextFeaturizer
from featx.modalities.text import make_config
from featx.store import StoreWriter
from tests.conftest import write_lines


@pytest.fixture
def text_file(tmp_path, sentences):
    return write_lines(tmp_path / "in.txt", sentences)


def run(tiny_backbone, source, out, **kwargs):
    options = dict(model=tiny_backbone, pooling="mean,cls,max,last", dtype="fp32", window_rows=8, progress=False)
    return featx.extract(source, out, **{**options, **kwargs})


def test_results_do_not_depend_on_batching(tiny_backbone, sentences):
    config = make_config(tiny_backbone, pooling=("mean", "cls", "max", "last"), dtype="fp32")
    one_by_one = Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=1).features(sentences)
    big_batches = Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=4096).features(sentences)
    singles = [Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=4096).features([t])
               for t in sentences[:5]]
    for name in config.poolings:
        np.testing.assert_allclose(one_by_one[name], big_batches[name], atol=1e-5)
        np.testing.assert_allclose(np.concatenate([s[name] for s in singles]), big_batches[name][:5], atol=1e-5)


def test_cpu_workers_split_the_threads():
    assert cpu_workers(1) == (1, 1)
    assert cpu_workers(2) == (2, 1)
    assert cpu_workers(16) == (4, 4)


def test_worker_threads_give_the_vectors_of_one_thread(tiny_backbone, sentences, monkeypatch):
    import featx.extraction.runners as runners

    config = make_config(tiny_backbone, pooling=("mean", "max"), dtype="fp32")
    monkeypatch.setattr(runners, "cpu_workers", lambda: (1, 1))
    serial = Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=16).features(sentences)
    monkeypatch.setattr(runners, "cpu_workers", lambda: (3, 1))
    threaded = Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=16).features(sentences)
    for name in config.poolings:
        np.testing.assert_allclose(threaded[name], serial[name], atol=1e-6)


def test_the_worker_threads_are_started_once_and_serve_every_window(tiny_backbone, sentences, monkeypatch):
    """The CPU workers are one pool a process: a pool a window started new threads every window."""
    import threading

    import featx.extraction.runners as runners

    monkeypatch.setattr(runners, "cpu_workers", lambda: (2, 1))
    config = make_config(tiny_backbone, pooling=("mean",), dtype="fp32")
    threads = set()  # the Thread objects themselves, kept alive, so none is counted twice
    forward = TextFeaturizer.forward

    def recording_forward(self, batch):
        threads.add(threading.current_thread())
        return forward(self, batch)

    monkeypatch.setattr(TextFeaturizer, "forward", recording_forward)
    encoder = Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=16)
    for _ in range(3):  # three windows
        encoder.features(sentences)
    assert 1 <= len(threads) <= 2 and all(t.name.startswith("featx-forward") for t in threads)


def test_an_error_in_a_worker_reaches_the_caller(tiny_backbone, sentences, monkeypatch):
    import featx.extraction.runners as runners

    monkeypatch.setattr(runners, "cpu_workers", lambda: (2, 1))
    config = make_config(tiny_backbone, pooling=("mean",), dtype="fp32")
    calls = []
    forward = TextFeaturizer.forward

    def failing_forward(self, batch):
        calls.append(len(batch["input_ids"]))
        if len(calls) == 3:
            raise RuntimeError("boom in a worker")
        return forward(self, batch)

    monkeypatch.setattr(TextFeaturizer, "forward", failing_forward)
    with pytest.raises(RuntimeError, match="boom in a worker"):
        Encoder.for_config(config, backbone=tiny_backbone, batch_tokens=16).features(sentences)


def test_store_layout_readable_with_plain_h5py(tiny_backbone, text_file, tmp_path, sentences):
    run(tiny_backbone, text_file, tmp_path / "s.h5").close()
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f.attrs["format"] == "featx-store" and bool(f.attrs["complete"])
        assert int(f.attrs["n_rows"]) == int(f.attrs["n_done"]) == len(sentences)
        assert sorted(f["features"]) == ["cls", "last", "max", "mean"]
        assert f["features/mean"].shape == (len(sentences), 32) and f["features/mean"].chunks[0] <= 8
        assert f["ids"][:].tolist() == list(range(len(sentences)))
        assert "labels" not in f
        import hashlib
        assert bytes(f["content_sha256"][1]) == hashlib.sha256(sentences[1].encode()).digest()
        config = featx.ExtractConfig.from_json(f.attrs["config"])
        assert config.fingerprint == f.attrs["fingerprint"] and config.max_length == 128


def test_store_rows_match_direct_embedding_in_input_order(tiny_backbone, text_file, tmp_path, sentences):
    with run(tiny_backbone, text_file, tmp_path / "s.h5") as store:
        X, y = store.load("max")
        direct = Encoder.for_config(store.config, backbone=tiny_backbone).features(sentences)["max"]
    assert y is None
    np.testing.assert_allclose(X, direct, atol=1e-5)


def test_resume_after_interruption_gives_identical_store(tiny_backbone, text_file, tmp_path, monkeypatch):
    reference = run(tiny_backbone, text_file, tmp_path / "ref.h5")
    original = StoreWriter.write_window
    calls = []

    def interrupt_after_three_windows(self, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_window", interrupt_after_three_windows)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_backbone, text_file, tmp_path / "s.h5")
    monkeypatch.setattr(StoreWriter, "write_window", original)
    with pytest.raises(FeatxError, match=r"incomplete .24 of 45 rows"):
        featx.open_store(tmp_path / "s.h5")
    with featx.open_store(tmp_path / "s.h5", allow_incomplete=True) as partial:
        assert len(partial) == 24 and partial.load("mean")[0].shape == (24, 32)
    resumed = run(tiny_backbone, text_file, tmp_path / "s.h5")
    assert resumed.info()["timings"]["resumed_from_row"] == 24
    for name in reference.poolings:
        np.testing.assert_array_equal(resumed.load(name)[0], reference.load(name)[0])
    np.testing.assert_array_equal(resumed.ids, reference.ids)
    np.testing.assert_array_equal(resumed.content_sha256, reference.content_sha256)


def test_complete_store_is_reused_not_recomputed(tiny_backbone, text_file, tmp_path):
    first = run(tiny_backbone, text_file, tmp_path / "s.h5")
    created = first.info()["created_at"], first.info()["timings"]
    first.close()
    again = run(tiny_backbone, text_file, tmp_path / "s.h5")
    assert (again.info()["created_at"], again.info()["timings"]) == created


def test_other_config_or_input_is_refused_unless_overwrite(tiny_backbone, text_file, tmp_path, sentences):
    run(tiny_backbone, text_file, tmp_path / "s.h5").close()
    with pytest.raises(FeatxError, match="another extraction config"):
        run(tiny_backbone, text_file, tmp_path / "s.h5", pooling="mean")
    other = write_lines(tmp_path / "other.txt", sentences[::-1])
    with pytest.raises(FeatxError, match="another input"):
        run(tiny_backbone, other, tmp_path / "s.h5")
    replaced = run(tiny_backbone, other, tmp_path / "s.h5", pooling="mean", overwrite=True)
    assert replaced.poolings == ("mean",) and len(replaced) == len(sentences)


def test_replacing_a_store_this_process_holds_open_says_so_and_keeps_it(tiny_backbone, text_file, tmp_path):
    held = run(tiny_backbone, text_file, tmp_path / "s.h5")
    with pytest.raises(FeatxError, match="is open in this process: close it") as refused:
        run(tiny_backbone, text_file, tmp_path / "s.h5", pooling="mean", overwrite=True)
    assert "damaged" not in str(refused.value)
    assert "cls" in held.poolings and len(held.load("cls")[0]) == len(held)  # untouched and readable
    held.close()
    assert run(tiny_backbone, text_file, tmp_path / "s.h5", pooling="mean", overwrite=True).poolings == ("mean",)


def test_labels_ids_and_concatenated_layers(tiny_backbone, tmp_path):
    path = write_lines(tmp_path / "in.csv", ["uid,text,label", "a,good,pos", "b,bad,neg", "c,fine,pos"])
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, id_column="uid", layers="-3:",
                       normalize=True, store_dtype="float16", progress=False) as store:
        X, y = store.load("mean")
        assert X.dtype == np.float16 and X.shape == (3, 96)
        assert y.tolist() == [1, 0, 1] and store.classes == ("neg", "pos")
        assert store.ids.tolist() == ["a", "b", "c"]
    with pytest.raises(FeatxError, match="layers -4 does not exist"):
        featx.extract(path, tmp_path / "t.h5", model=tiny_backbone, layers="-4:", progress=False)


def test_iter_batches_streams_every_row_once(tiny_backbone, text_file, tmp_path, sentences):
    with run(tiny_backbone, text_file, tmp_path / "s.h5") as store:
        blocks = list(store.iter_batches("cls", batch_rows=10))
        X, _ = store.load("cls")
    assert [len(b[0]) for b in blocks] == [10, 10, 10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), X)


def test_rows_cut_to_max_length_are_counted_in_the_store_info_and_summary(tiny_backbone, tmp_path, capsys):
    from featx.store import format_info, summary_line

    texts = ["short", "one two three four five six seven eight nine ten eleven", "a b", "x " * 40]
    path = write_lines(tmp_path / "in.txt", texts)
    lengths = [len(ids) for ids in tiny_backbone.tokenizer(texts)["input_ids"]]  # with special tokens, uncut
    with run(tiny_backbone, path, tmp_path / "s.h5", max_length=8, window_rows=2) as store:
        assert store.truncated.tolist() == [int(n > 8) for n in lengths] == [0, 1, 0, 1]
        details = store.info()
        assert details["truncated_rows"] == 2
        assert "(2 of 4 rows cut to it, 50.0 %)" in format_info(details)
        assert summary_line(details).endswith(", 2 rows cut to 8 tokens")
    from tests.test_store_compatibility import FIXTURE

    with featx.open_store(FIXTURE) as old:  # written before featx counted: said so, not guessed
        assert old.truncated is None and old.info()["truncated_rows"] is None
        assert "not recorded" in format_info(old.info())
