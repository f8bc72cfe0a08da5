"""Rows in memory (issue 31): a CSV, a list, a dict, a pandas DataFrame, a pyarrow Table and a
datasets.Dataset of the same SST-2 rows give the same vectors bit for bit and the same fingerprint;
a changed object is refused on resume; mistakes are one line."""
import csv

import numpy as np
import pytest

import featx
from featx.errors import FeatxError


@pytest.fixture(scope="module")
def sst2_rows(data_dir):
    """The first 2,000 rows of SST-2's train split from the shared data (text, label)."""
    path = data_dir / "sst2" / "train.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:2000]
    return [r["sentence"] for r in rows], [r["label"] for r in rows]


def _extract(input, out, model, **options):
    with featx.extract(input, out, model=model, dtype="fp32", backend="torch", progress=False, **options) as store:
        return store.load()[0], store.fingerprint, store.header.input


def test_a_file_and_every_in_memory_form_give_the_same_vectors(tmp_path, tiny_backbone, sst2_rows):
    pd = pytest.importorskip("pandas", reason="featx[pandas] is not installed")
    pa = pytest.importorskip("pyarrow", reason="featx[parquet] is not installed")
    datasets = pytest.importorskip("datasets", reason="featx[datasets] is not installed")
    texts, labels = sst2_rows
    path = tmp_path / "rows.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    columns = {"text": texts, "label": labels}
    forms = {"file": path, "dict": columns, "DataFrame": pd.DataFrame(columns),
             "Table": pa.table(columns), "Dataset": datasets.Dataset.from_dict(columns)}
    found = {name: _extract(form, tmp_path / f"{name}.h5", tiny_backbone, label_column="label")
             for name, form in forms.items()}
    vectors, fingerprint, _ = found["file"]
    for name, (other, other_fingerprint, described) in found.items():
        assert np.abs(other - vectors).max() == 0.0, name  # bit for bit
        assert other_fingerprint == fingerprint, name
        if name != "file":
            assert f'"format":"memory:{name}"' in described  # the kind is recorded beside the config
    plain, plain_fingerprint, _ = _extract(texts, tmp_path / "list.h5", tiny_backbone)
    assert np.abs(plain - vectors).max() == 0.0 and plain_fingerprint == fingerprint
    with featx.open_store(tmp_path / "Dataset.h5") as store:
        assert store.classes == ("0", "1") and store.labels[:5].tolist() == [int(x) for x in labels[:5]]


def test_a_dataset_classlabel_gives_the_class_names(tmp_path, tiny_backbone):
    datasets = pytest.importorskip("datasets", reason="featx[datasets] is not installed")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    rows = datasets.Dataset.from_dict({"text": ["dull", "lovely", "bad", "great"], "label": [0, 1, 0, 1]},
                                      features=features)
    with featx.extract(rows, tmp_path / "s.h5", model=tiny_backbone, label_column="label", progress=False) as store:
        assert store.classes == ("negative", "positive") and store.labels.tolist() == [0, 1, 0, 1]


def test_a_changed_object_is_refused_on_resume(tmp_path, tiny_backbone):
    rows = {"text": [f"row {i}" for i in range(40)], "label": ["a", "b"] * 20}
    featx.extract(rows, tmp_path / "s.h5", model=tiny_backbone, label_column="label", progress=False).close()
    again = featx.extract(rows, tmp_path / "s.h5", model=tiny_backbone, label_column="label", progress=False)
    again.close()  # the same rows: the complete store is returned as it is
    rows["text"][7] = "another text"
    with pytest.raises(FeatxError, match="--overwrite"):
        featx.extract(rows, tmp_path / "s.h5", model=tiny_backbone, label_column="label", progress=False)


def test_in_memory_mistakes_are_one_line(tmp_path, tiny_backbone):
    pd = pytest.importorskip("pandas", reason="featx[pandas] is not installed")
    with pytest.raises(FeatxError, match="has no column 'text'; it has: sentence, label"):
        featx.extract(pd.DataFrame({"sentence": ["a"], "label": [1]}), tmp_path / "a.h5", model=tiny_backbone)
    with pytest.raises(FeatxError, match=r"row 2: the label .* is missing"):
        featx.extract(pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}), tmp_path / "b.h5",
                      model=tiny_backbone, label_column="label")
    with pytest.raises(FeatxError, match="must hold texts"):
        featx.extract(["a", 3], tmp_path / "c.h5", model=tiny_backbone)
    with pytest.raises(FeatxError, match="has no rows"):
        featx.extract({"text": []}, tmp_path / "d.h5", model=tiny_backbone)
    assert not list(tmp_path.glob("*.h5"))


def test_hf_inputs_on_the_command_line(tmp_path, tiny_bert_dir, cli):
    datasets = pytest.importorskip("datasets", reason="featx[datasets] is not installed")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    split = {"text": [f"{w} film {i}" for i, w in enumerate(["dull", "great"] * 12)], "label": [0, 1] * 12}
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(split, features=features)}).save_to_disk(str(folder))
    args = ["--model", str(tiny_bert_dir), "--dtype", "fp32", "--label-column", "label", "-q"]
    result = cli("extract", f"hf:{folder}:train", "-o", tmp_path / "s.h5", *args)
    assert result.code == 0, result.err
    with featx.open_store(tmp_path / "s.h5") as store:
        assert len(store) == 24 and store.classes == ("neg", "pos")
    for spec, words in ((f"hf:{folder}", "holds several splits (splits: train)"),
                        (f"hf:{folder}:test", "has no split 'test' (splits: train)"),
                        (f"hf:{tmp_path / 'missing'}", "could not load")):
        refused = cli("extract", spec, "-o", tmp_path / "t.h5", *args)
        assert refused.code == 2 and words in refused.err and refused.err.count("\n") == 1, refused.err
    assert not (tmp_path / "t.h5").exists()
