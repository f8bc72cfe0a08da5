"""A second store format through the store seam (featx.store.format.StoreFormat), test-only: a
folder of one .npz per committed window and a header.json. featx.extract writes it, resumes it
after an interruption, returns it untouched when complete, and a head trains on what it returns,
with no edit to the engine (issue 32)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import featx
from featx.config import ExtractConfig
from featx.errors import OutputError
from featx.extraction.runners import make_runner
from featx.modalities import modality_named
from tests.conftest import InterruptAfter, write_lines


class NpyStore:
    """What heads read of a store, from a folder NpyFolderFormat wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header = json.loads((path / "header.json").read_text())
        self.config = ExtractConfig.from_json(self.header["config"])
        self.fingerprint, self.complete = self.config.fingerprint, self.header["complete"]
        self.poolings, self.task = self.config.poolings, self.header["task"]
        self.classes = tuple(self.header["classes"]) if self.header["classes"] is not None else None
        windows = [np.load(path / f"window-{start}.npz") for start in range(0, self.header["n_done"],
                                                                            self.header["window_rows"])]
        self._rows = {key: np.concatenate([w[key] for w in windows]) for key in windows[0].files} if windows else {}
        self.n_done = len(self._rows.get("ids", ()))

    @property
    def labels(self) -> np.ndarray | None:
        return self._rows.get("labels")

    def load(self, pooling: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        return self._rows[pooling or self.poolings[0]], self.labels

    def readable(self) -> None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NpyWriter:
    def __init__(self, path: Path, header: dict) -> None:
        self.path, self.header = path, header

    n_done = property(lambda self: self.header["n_done"])
    n_rows = property(lambda self: self.header["n_rows"])
    row_offset = property(lambda self: 0)
    next_row = property(lambda self: self.header["n_done"])
    window_rows = property(lambda self: self.header["window_rows"])
    complete = property(lambda self: self.header["complete"])

    def write_window(self, start, ids, content_sha256, labels, features, flags) -> None:
        assert start == self.n_done
        rows = {"ids": np.asarray(ids), "hashes": content_sha256, **features, **flags}
        if labels is not None:
            rows["labels"] = labels
        scratch = self.path / f".window-{start}.npz"
        np.savez(scratch, **rows)
        os.replace(scratch, self.path / f"window-{start}.npz")  # the window, then the header that counts it
        self._commit(n_done=start + len(ids))

    def finish(self, timings) -> None:
        self._commit(complete=True, timings=timings)

    def close(self) -> None:
        pass

    def written(self) -> NpyStore:
        return NpyStore(self.path)

    def _commit(self, **changes) -> None:
        self.header.update(changes)
        (self.path / ".header.json").write_text(json.dumps(self.header))
        os.replace(self.path / ".header.json", self.path / "header.json")


class NpyFolderFormat:
    opened = 0

    def stored_config(self, path: Path):
        header = path / "header.json"
        return json.loads(json.loads(header.read_text())["config"]) if header.is_file() else None

    def _matches(self, header: dict, plan) -> bool:
        return (header["fingerprint"], header["input_sha256"], header["n_rows"]) == \
            (plan.config.fingerprint, plan.input_sha256, plan.rows)

    def complete_store(self, path: Path, plan):
        header = path / "header.json"
        if header.is_file():
            found = json.loads(header.read_text())
            if found["complete"] and self._matches(found, plan):
                return NpyStore(path)
        return None

    def open_writer(self, path: Path, plan, *, overwrite=False, inputs=()):
        type(self).opened += 1
        if (path / "header.json").is_file() and not overwrite:
            header = json.loads((path / "header.json").read_text())
            if not self._matches(header, plan):
                raise OutputError(f"{path} holds another extraction: pass overwrite=True to replace it")
            return NpyWriter(path, header)
        path.mkdir(parents=True, exist_ok=True)
        header = {"config": plan.config.to_json(), "fingerprint": plan.config.fingerprint, "n_rows": plan.rows,
                  "input_sha256": plan.input_sha256, "window_rows": plan.window_rows, "n_done": 0, "complete": False,
                  "classes": list(plan.classes) if plan.classes is not None else None, "task": plan.task}
        writer = NpyWriter(path, header)
        writer._commit()
        return writer


@pytest.fixture
def labelled_csv(tmp_path):
    rows = [(f"{'a fine warm film' if i % 2 else 'a dull tired mess'} {i}", "pos" if i % 2 else "neg")
            for i in range(50)]
    return write_lines(tmp_path / "t.csv", ["text,label", *(f"{t},{y}" for t, y in rows)])


def test_a_second_format_extracts_resumes_and_trains_a_head(tmp_path, labelled_csv, tiny_backbone):
    fmt = NpyFolderFormat()
    options = {"model": tiny_backbone, "dtype": "fp32", "window_rows": 8, "progress": False, "backend": "torch"}
    featurizer = modality_named("text").featurizer_for(
        featx.extract(labelled_csv, tmp_path / "ref.h5", **options).config, backbone=tiny_backbone)
    with pytest.raises(KeyboardInterrupt):
        featx.extract(labelled_csv, tmp_path / "npy", featurizer=featurizer,
                      runner=InterruptAfter(make_runner(featurizer), 3), window_rows=8, store_format=fmt, progress=False)
    assert json.loads((tmp_path / "npy" / "header.json").read_text())["n_done"] == 24
    store = featx.extract(labelled_csv, tmp_path / "npy", store_format=fmt, **options)
    assert isinstance(store, NpyStore) and store.complete and store.header["timings"]["resumed_from_row"] == 24
    with featx.open_store(tmp_path / "ref.h5") as reference:
        assert store.fingerprint == reference.fingerprint
        np.testing.assert_array_equal(store.load()[0], reference.load()[0])
        np.testing.assert_array_equal(store.labels, reference.labels)
        head = featx.train_head(store, "logreg")
        reference_head = featx.train_head(reference, "logreg")
        np.testing.assert_allclose(head.estimator.predict_proba(store.load()[0]),
                                   reference_head.estimator.predict_proba(reference.load()[0]), atol=1e-9)
    # Complete and matching: returned as it is, no writer opened.
    opened = NpyFolderFormat.opened
    assert featx.extract(labelled_csv, tmp_path / "npy", store_format=fmt, **options).complete
    assert NpyFolderFormat.opened == opened
    # A rerun without --backend takes the backend from the format's stored config.
    assert featx.extract(labelled_csv, tmp_path / "npy", store_format=fmt,
                         **{**options, "backend": None}).config.backend is None
    with pytest.raises(OutputError, match="holds another extraction"):
        featx.extract(labelled_csv, tmp_path / "npy", store_format=fmt, **{**options, "pooling": "cls"})
