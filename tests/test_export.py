"""`featx export`: npy and parquet round-trip a store's vectors, ids, labels and flags, read back
with numpy or pyarrow alone; the folder is whole or absent, and nothing else is ever replaced."""
import json
import subprocess
import sys

import numpy as np
import pytest

import featx
from tests.conftest import write_lines

# Read an export in a process where importing featx fails: numpy and pyarrow alone.
_READ_WITHOUT_FEATX = """
import json, sys
sys.modules["featx"] = None
import numpy as np
folder, fmt = sys.argv[1], sys.argv[2]
meta = json.load(open(folder + "/featx-export.json"))
if fmt == "npy":
    out = {name: np.load(folder + "/" + file).tolist() for name, file in meta["files"].items()}
else:
    import pyarrow.parquet as pq
    table = pq.read_table(folder + "/vectors.parquet")
    out = {name: table.column(name).to_pylist() for name in table.column_names}
    out["metadata"] = json.loads(table.schema.metadata[b"featx"])["fingerprint"]
print(json.dumps({"meta": meta, "columns": out}))
"""


@pytest.fixture
def labelled_store(tmp_path, tiny_backbone):
    rows = ["uid,text,label"] + [f"r{i},{'good' if i % 3 else 'bad'} film {i} {'!' * (i % 5)},"
                                 f"{'pos' if i % 3 else 'neg'}" for i in range(70)]
    path = write_lines(tmp_path / "in.csv", rows)
    with featx.extract(path, tmp_path / "s.h5", model=tiny_backbone, pooling="mean,cls", dtype="fp32",
                       max_length=6, id_column="uid", window_rows=16, progress=False) as store:
        expected = {"ids": store.ids.tolist(), "labels": store.labels.tolist(), "classes": list(store.classes),
                    "truncated": store.truncated.tolist(), "fingerprint": store.fingerprint,
                    "mean": store.load("mean")[0], "cls": store.load("cls")[0]}
    return tmp_path / "s.h5", expected


def read_without_featx(folder, fmt):
    done = subprocess.run([sys.executable, "-c", _READ_WITHOUT_FEATX, str(folder), fmt], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_export_round_trips_read_by_numpy_or_pyarrow_alone(tmp_path, labelled_store, cli, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="featx[parquet] is not installed")
    store, expected = labelled_store
    result = cli("export", str(store), "-o", str(tmp_path / "out"), "--format", fmt)
    assert result.code == 0, result.err
    read = read_without_featx(tmp_path / "out", fmt)
    meta, columns = read["meta"], read["columns"]
    assert meta["fingerprint"] == expected["fingerprint"] and meta["rows"] == 70
    assert meta["classes"] == expected["classes"] and meta["poolings"] == ["cls", "mean"]
    assert meta["config"]["max_length"] == 6
    if fmt == "npy":
        ids, labels, truncated = columns["ids"], columns["labels"], columns["truncated"]
    else:
        ids, labels, truncated = columns["id"], columns["label"], [int(t) for t in columns["truncated"]]
        assert columns["label_name"] == [expected["classes"][i] for i in expected["labels"]]
        assert read["columns"]["metadata"] == expected["fingerprint"]
    assert ids == expected["ids"] and labels == expected["labels"] and truncated == expected["truncated"]
    assert sum(truncated) > 0  # max_length 6 cut some rows: the flags carry real information
    for pooling in ("mean", "cls"):
        assert np.array_equal(np.asarray(columns[pooling], dtype=np.float32), expected[pooling])


def test_export_never_replaces_other_files_and_asks_before_replacing_an_export(tmp_path, labelled_store, cli):
    store, _ = labelled_store
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    for target, words in ((occupied, "holds no featx export"), (store, "is a file")):
        result = cli("export", str(store), "-o", str(target))
        assert result.code == 2 and words in result.err and len(result.err.strip().splitlines()) == 1
    assert (occupied / "notes.txt").read_text() == "mine" and sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]
    assert cli("export", str(store), "-o", str(tmp_path / "out")).code == 0
    again = cli("export", str(store), "-o", str(tmp_path / "out"), "--format", "parquet")
    assert again.code == 2 and "--overwrite" in again.err
    assert cli("export", str(store), "-o", str(tmp_path / "out"), "--overwrite").code == 0


def test_a_failed_export_leaves_nothing_that_looks_complete(tmp_path, labelled_store, monkeypatch, cli):
    from featx.store import export

    store, _ = labelled_store

    def fail_half_way(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.np.lib.format, "open_memmap", fail_half_way)
    result = cli("export", str(store), "-o", str(tmp_path / "out"))
    assert result.code == 2 and "No space left on device" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.featx-*"))


def test_an_unfinished_store_is_not_exported(tmp_path, tiny_backbone, cli):
    from featx.modalities.text import make_config
    from featx.store import StorePlan, StoreWriter

    config = make_config(tiny_backbone, dtype="fp32")
    plan = StorePlan(config=config, input_json="{}", input_sha256="0" * 64, input_rows=3, dim=32, classes=None,
                     id_kind="int", window_rows=8, hardware={})
    StoreWriter.open(tmp_path / "s.h5", plan).close()
    result = cli("export", str(tmp_path / "s.h5"), "-o", str(tmp_path / "out"))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
