"""featx.extract's options in groups (featx.options): the groups, their dict form and the keyword
shorthand give one extraction; a misspelt, doubled or invalid option is one line before any work."""
import dataclasses

import numpy as np
import pytest

import featx
from featx.errors import ParameterError
from featx.options import FIELD_GROUP, GROUPS, VECTOR_OPTIONS, ExtractOptions, ModelOptions, RunOptions
from tests.conftest import write_lines


@pytest.fixture
def texts(tmp_path, sentences):
    return write_lines(tmp_path / "texts.txt", sentences)


def test_groups_dicts_and_keywords_give_the_same_store(tmp_path, texts, tiny_backbone):
    grouped = featx.extract(
        texts, tmp_path / "grouped.h5", model=featx.ModelOptions(tiny_backbone, dtype="fp32"),
        vectors=featx.VectorOptions(pooling=("mean", "max"), max_length=16),
        store=featx.StoreOptions(store_dtype="float16"), run=featx.RunOptions(window_rows=3, progress=False))
    as_dicts = featx.extract(
        texts, tmp_path / "dicts.h5", model={"model": tiny_backbone, "dtype": "fp32"},
        vectors={"pooling": ("mean", "max"), "max_length": 16}, store={"store_dtype": "float16"},
        run={"window_rows": 3, "progress": False})
    flat = featx.extract(texts, tmp_path / "flat.h5", model=tiny_backbone, dtype="fp32", pooling=("mean", "max"),
                         max_length=16, store_dtype="float16", window_rows=3, progress=False)
    with grouped, as_dicts, flat:
        assert grouped.fingerprint == as_dicts.fingerprint == flat.fingerprint
        assert grouped.config.dtype == "fp32" and grouped.config.max_length == 16
        assert grouped.header.window_rows == 3
        for pooling in ("mean", "max"):
            vectors = grouped.load(pooling)[0]
            assert vectors.dtype == np.float16
            np.testing.assert_array_equal(vectors, as_dicts.load(pooling)[0])
            np.testing.assert_array_equal(vectors, flat.load(pooling)[0])


def test_a_keyword_fills_a_field_a_group_left_at_its_default(tmp_path, texts, tiny_backbone):
    with featx.extract(texts, tmp_path / "mixed.h5", model=tiny_backbone, vectors=featx.VectorOptions(max_length=16),
                       pooling="max", dtype="fp32", progress=False) as store:
        assert store.poolings == ("max",) and store.config.max_length == 16


@pytest.mark.parametrize("options, message", [
    ({"poolng": "mean"}, "poolng is not an option of featx.extract (did you mean 'pooling'?)"),
    ({"vectors": featx.VectorOptions(pooling="cls"), "pooling": "mean"},
     "pooling is set both in vectors= and as a keyword: give it once"),
    ({"run": {"window_row": 5}}, "run has no option 'window_row'"),
    ({"store": ["float16"]}, "store must be a StoreOptions or a dict of its fields, not list"),
    ({"window_rows": 0}, "window_rows"),
    ({"store": {"compression": "zstd"}}, "compression"),
])
def test_a_wrong_option_is_one_line_before_anything_is_read_or_written(tmp_path, options, message):
    missing = tmp_path / "no-such-input.txt"  # never opened: the options are checked first
    with pytest.raises(ParameterError) as caught:
        featx.extract(missing, tmp_path / "out.h5", **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_groups_check_their_own_values_when_made():
    with pytest.raises(ParameterError, match="batch_tokens"):
        RunOptions(batch_tokens=-1)
    with pytest.raises(ParameterError, match="compression"):
        featx.StoreOptions(compression="zstd")


def test_every_field_belongs_to_one_group_and_changed_names_what_was_set():
    names = [f.name for cls in GROUPS.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(FIELD_GROUP)
    assert set(VECTOR_OPTIONS) == {f.name for f in dataclasses.fields(featx.VectorOptions)} | \
        {f.name for f in dataclasses.fields(ModelOptions)} - {"model"}
    chosen = ExtractOptions.build("out.h5", model="m", pooling="mean", run=RunOptions(progress=False))
    assert chosen.changed() == ["model", "pooling", "progress"] and str(chosen.output) == "out.h5"
    assert ExtractOptions.build().changed() == []


def test_encode_takes_the_vectors_group_and_the_model_group(tiny_backbone, sentences):
    by_keywords = featx.encode(sentences, model=tiny_backbone, pooling="max", dtype="fp32")
    by_groups = featx.encode(sentences, model=ModelOptions(tiny_backbone, dtype="fp32"),
                             vectors=featx.VectorOptions(pooling="max"))
    np.testing.assert_array_equal(by_keywords, by_groups)
    with pytest.raises(ParameterError, match=r"window_rows is not an option of featx\.encode"):
        featx.encode(sentences, model=tiny_backbone, window_rows=3)


def test_a_parameter_without_a_declared_constraint_is_refused():
    """check_params let undeclared parameters pass unchecked (issue 32); scikit-learn's validator refuses them."""
    from featx.constraints import COUNT, check_params
    from featx.errors import ParameterError

    assert check_params({"epochs": COUNT}, {"epochs": 2}) == {"epochs": 2}
    with pytest.raises(ParameterError, match="epoch is not a known parameter here"):
        check_params({"epochs": COUNT}, {"epochs": 2, "epoch": 3})


def _invalid_values(constraint) -> list:
    """Values `constraint` must refuse, generated from its own declaration (not written per parameter)."""
    from featx.constraints import AnyOf, Flag, Grid, Interval, Options, Weights

    if isinstance(constraint, Interval):
        bad: list = ["not a number", float("nan"), True]
        if constraint.low is not None:
            bad.append(constraint.low if constraint.low_open else constraint.low - 1)
        if constraint.high is not None:
            bad.append(constraint.high if constraint.high_open else constraint.high + 1)
        if constraint.type is int:
            bad.append(1.5)
        return [value for value in bad if not (isinstance(value, float) and value in constraint.also)]
    if isinstance(constraint, Options):
        return ["__none_of_them__", *([] if constraint.allow_none else [None])]
    if isinstance(constraint, Flag):
        return ["yes", 1, None]
    if isinstance(constraint, Grid):
        return [(), *[(value,) for value in _invalid_values(constraint.item)]]
    if isinstance(constraint, Weights):
        return [{"a": 0.0}, {"a": -1.0}, "a", None]
    if isinstance(constraint, AnyOf):
        return [object()]
    raise AssertionError(f"a constraint kind the generator does not know: {constraint!r}")


def _constraint_tables() -> dict:
    """Every declared table: each head kind's, the fine-tuning recipe's, each modality's own options."""
    import dataclasses

    from featx.finetune.recipe import RECIPE_CONSTRAINTS
    from featx.heads import HEAD_KINDS
    from featx.modalities import MODALITIES

    tables = {f"head {kind}": dict(cls.parameter_constraints) for kind, cls in HEAD_KINDS.items()}
    tables["finetune recipe"] = dict(RECIPE_CONSTRAINTS)
    for name, modality in MODALITIES.items():
        tables[f"modality {name}"] = {f.name: f.metadata["constraint"] for f in dataclasses.fields(modality.options)
                                      if "constraint" in f.metadata}
    return tables


def test_every_declared_constraint_refuses_an_invalid_value_generated_from_its_table():
    """One common test for every table (issue 32): each parameter is fed values its own constraint
    rules out, and check_params refuses each in one ParameterError naming that parameter."""
    from featx.constraints import check_params
    from featx.errors import ParameterError
    from tests.conftest import registries_restored
    from tests.toy_audio import register

    with registries_restored():
        register()  # a modality from outside featx: its declared option is held to the same rule
        tables = _constraint_tables()
        assert tables["modality audio"] and all(tables[f"head {kind}"] for kind in ("logreg", "mlp", "ridge", "knn"))
        checked = 0
        for where, table in tables.items():
            for name, constraint in table.items():
                for value in _invalid_values(constraint):
                    with pytest.raises(ParameterError) as refused:
                        check_params(table, {name: value})
                    assert refused.value.param == name, (where, name, value)
                    checked += 1
        assert checked > 100
