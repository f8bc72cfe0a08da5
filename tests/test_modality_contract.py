"""The seams every registered modality must keep, checked the same way for each: texts (a tiny
BERT), images (synthetic JPEGs through a tiny ViT) and the toy third modality (float rows through
a tiny torch module, tests/toy_modality). For each: an interrupted extraction resumes to the
uninterrupted store, shards merge to the whole store, the vector cache serves a rerun, a head
trained on the store predicts raw inputs as it scores the store, and a fine-tuned checkpoint
predicts raw inputs as it streams its input (or, for a modality that does not fine-tune, one line)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import featx
from featx.extraction.runners import make_runner
from featx.extraction.shards import shard_path
from featx.store.merge import merge_shards
from tests.conftest import registries_restored, write_lines
from tests.toy_modality import register, save_tiny_model


@dataclass
class Case:
    input: Path
    model: str
    raw: list[Any]  # the rows of `input` as in-memory inputs, in store order
    options: dict[str, Any]


@pytest.fixture(params=["text", "image", "vector"])
def case(request, tmp_path) -> Case:
    if request.param == "text":
        rows = [(f"review {i}: " + ("good " if i % 2 else "bad ") * (1 + i % 5), "pos" if i % 2 else "neg")
                for i in range(40)]
        path = write_lines(tmp_path / "texts.csv", ["text,label", *(f"{t},{y}" for t, y in rows)])
        return Case(path, str(request.getfixturevalue("tiny_bert_dir")), [t for t, _ in rows], {"dtype": "fp32"})
    if request.param == "image":
        folder = request.getfixturevalue("cifar_few")
        (tmp_path / "ids").mkdir()
        with featx.open_store(_whole(folder, str(request.getfixturevalue("tiny_vit_dir")), tmp_path / "ids")) as store:
            ids = [str(i) for i in store.ids]  # the store's row order
        return Case(folder, str(request.getfixturevalue("tiny_vit_dir")), [(folder / i).read_bytes() for i in ids],
                    {"dtype": "fp32"})
    restored = registries_restored()
    restored.__enter__()
    request.addfinalizer(lambda: restored.__exit__(None, None, None))
    register()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    x = (rng.normal(size=(2, 6))[y] * 3 + rng.normal(size=(40, 6))).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=x, y=np.array(["neg", "pos"])[y])
    return Case(tmp_path / "rows.npz", str(save_tiny_model(tmp_path / "model", 6, 4)), list(x), {})


def _whole(input: Path, model: str, folder: Path, **options: Any) -> Path:
    out = folder / "whole.h5"
    featx.extract(input, out, model=model, window_rows=4, progress=False, **options).close()
    return out


def _same(a: Path, b: Path) -> None:
    with featx.open_store(a) as x, featx.open_store(b) as y:
        assert x.fingerprint == y.fingerprint and x.ids.tolist() == y.ids.tolist()
        assert np.array_equal(x.labels, y.labels)
        for pooling in x.poolings:
            np.testing.assert_array_equal(x.load(pooling)[0], y.load(pooling)[0])


class StopAfter:
    """A runner that stops the run (as a Ctrl-C would) when asked for its `windows`+1-th window."""

    batch_cost = 0

    def __init__(self, windows: int) -> None:
        self.windows, self.calls = windows, 0

    def run(self, featurizer, items, timer=None):
        if self.calls == self.windows:
            raise KeyboardInterrupt
        self.calls += 1
        return make_runner(featurizer).run(featurizer, items, timer)


def test_an_interrupted_extraction_resumes_to_the_uninterrupted_store(case, tmp_path):
    whole = _whole(case.input, case.model, tmp_path, **case.options)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        featx.extract(case.input, out, model=case.model, window_rows=4, runner=StopAfter(1), progress=False,
                      **case.options)
    with featx.open_store(out, allow_incomplete=True) as partial:
        assert 0 < partial.n_done < partial.n_rows
    with featx.extract(case.input, out, model=case.model, window_rows=4, progress=False, **case.options) as resumed:
        assert resumed.info()["timings"]["resumed_from_row"] == 4
    _same(out, whole)


def test_shards_merge_to_the_whole_store(case, tmp_path):
    whole = _whole(case.input, case.model, tmp_path, **case.options)
    out = tmp_path / "sharded.h5"
    for index in range(3):
        featx.extract(case.input, out, model=case.model, window_rows=4, shard=(index, 3), progress=False,
                      **case.options).close()
    merge_shards([shard_path(out, index, 3) for index in range(3)], tmp_path / "merged.h5", copy=True)
    _same(tmp_path / "merged.h5", whole)


def test_the_vector_cache_serves_a_rerun(case, tmp_path):
    whole = _whole(case.input, case.model, tmp_path, **case.options)
    for name in ("first.h5", "second.h5"):
        featx.extract(case.input, tmp_path / name, model=case.model, window_rows=4, cache_dir=tmp_path / "cache",
                      progress=False, **case.options).close()
    with featx.open_store(tmp_path / "second.h5") as second:
        assert second.info()["timings"]["cache_hits"] == second.n_rows
    _same(tmp_path / "second.h5", whole)


def test_a_head_predicts_raw_inputs_as_it_scores_the_store(case, tmp_path):
    with featx.open_store(_whole(case.input, case.model, tmp_path, **case.options)) as store:
        head = featx.train_head(store, "logreg")
        expected = head.estimator.predict_proba(store.load(head.pooling)[0])
        predictor = featx.Predictor(featx.TrainedHead.load(head.save(tmp_path / "head")))
        np.testing.assert_allclose(predictor.predict_proba(case.raw), expected, atol=1e-5)


def test_a_finetuned_checkpoint_predicts_raw_inputs_as_it_streams_its_input(case, tmp_path):
    from featx.errors import FeatxError
    from featx.finetune import finetune, load_finetuned
    from featx.finetune.recipe import FinetuneConfig
    from featx.modalities import open_source

    config = FinetuneConfig(model=case.model, max_steps=2, batch_size=8, lr=1e-3, dtype="fp32")
    source = open_source(case.input)
    if getattr(source, "modality", "text") == "vector":  # the toy modality does not fine-tune: one line says so
        with pytest.raises(FeatxError) as caught:
            finetune(source, tmp_path / "ft", config=config, progress=False)
        assert "\n" not in str(caught.value) and not (tmp_path / "ft").exists()
        return
    record = finetune(source, tmp_path / "ft", val=open_source(case.input), config=config, progress=False)
    assert len(record["losses"]) == 2 and record["val_rows"] == len(case.raw)
    predictor = load_finetuned(tmp_path / "ft")
    again = open_source(case.input)
    streamed = np.stack([p for _, p in predictor.predict_input(again, again.scan())])
    np.testing.assert_allclose(predictor.predict_proba(case.raw), streamed, atol=1e-5)
    assert predictor.evaluate(open_source(case.input))["accuracy"] == pytest.approx(record["epochs"][-1]["val_accuracy"])
