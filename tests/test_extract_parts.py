"""featx.extract composed from parts handed in: a featurizer made ahead, a runner of one's own
and a writer opened another way give the store the built-in parts give."""
import numpy as np
import pytest

import featx
from featx.errors import FeatxError, ParameterError
from featx.extraction.runners import make_runner
from featx.featurizers import TextFeaturizer
from featx.modalities.text import make_config
from featx.store import HDF5Format, StoreWriter
from tests.conftest import write_lines


@pytest.fixture
def texts(tmp_path, sentences):
    return write_lines(tmp_path / "texts.txt", sentences)


def _same_store(a, b):
    assert a.fingerprint == b.fingerprint and a.ids.tolist() == b.ids.tolist()
    for pooling in a.poolings:
        np.testing.assert_array_equal(a.load(pooling)[0], b.load(pooling)[0])


def test_a_featurizer_made_ahead_gives_the_store_extract_makes(tmp_path, texts, tiny_backbone):
    featurizer = TextFeaturizer(tiny_backbone, make_config(tiny_backbone, pooling="mean,max", dtype="fp32"))
    with featx.extract(texts, tmp_path / "given.h5", featurizer=featurizer, progress=False) as given, \
            featx.extract(texts, tmp_path / "built.h5", model=tiny_backbone, pooling="mean,max", dtype="fp32",
                          progress=False) as built:
        _same_store(given, built)


def test_a_runner_and_a_writer_of_ones_own_are_used(tmp_path, texts, tiny_backbone):
    featurizer = TextFeaturizer(tiny_backbone, make_config(tiny_backbone, dtype="fp32"))
    inner = make_runner(featurizer, 64)
    seen, windows = [], []

    class CountingRunner:
        device, batch_cost = inner.device, inner.batch_cost

        def run(self, featurizer, items, timer=None):
            seen.append(len(items))
            return inner.run(featurizer, items, timer)

    class RecordingWriter(StoreWriter):
        def write_window(self, start, *args, **kwargs):
            windows.append(start)
            super().write_window(start, *args, **kwargs)

    class RecordingFormat(HDF5Format):
        def open_writer(self, path, plan, **kwargs):
            return RecordingWriter.open(path, plan, **kwargs)

    with featx.extract(texts, tmp_path / "s.h5", featurizer=featurizer, runner=CountingRunner(), window_rows=10,
                       store_format=RecordingFormat(), progress=False) as store, \
            featx.extract(texts, tmp_path / "ref.h5", model=tiny_backbone, dtype="fp32", batch_tokens=64,
                          window_rows=10, progress=False) as reference:
        _same_store(store, reference)
        assert sum(seen) == store.n_rows and windows == list(range(0, store.n_rows, 10))


def test_options_a_given_featurizer_has_decided_are_refused(tmp_path, texts, tiny_backbone):
    featurizer = TextFeaturizer(tiny_backbone, make_config(tiny_backbone, dtype="fp32"))
    with pytest.raises(ParameterError, match="pooling is decided by the featurizer given"):
        featx.extract(texts, tmp_path / "s.h5", featurizer=featurizer, pooling="cls")
    with pytest.raises(ParameterError, match="model is decided by the featurizer given"):
        featx.extract(texts, tmp_path / "s.h5", featurizer=featurizer, model=tiny_backbone)
    assert not (tmp_path / "s.h5").exists()


def test_a_featurizer_of_another_modality_is_refused(tmp_path, cifar_few, tiny_backbone):
    featurizer = TextFeaturizer(tiny_backbone, make_config(tiny_backbone, dtype="fp32"))
    with pytest.raises(FeatxError, match="embeds text, but the input is read as image"):
        featx.extract(cifar_few, tmp_path / "s.h5", featurizer=featurizer)
