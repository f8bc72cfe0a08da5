import pytest

from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.options import parse_layers

BASE = dict(model="m", weights_sha256="w" * 64, tokenizer_sha256="t" * 64, max_length=128)


def test_fingerprint_ignores_model_name_but_not_vector_settings():
    config = ExtractConfig(**BASE)
    assert ExtractConfig(**{**BASE, "model": "/elsewhere/same-weights"}).fingerprint == config.fingerprint
    for change in ({"max_length": 64}, {"poolings": ("mean", "cls")}, {"layers": (-2,)}, {"normalize": True},
                   {"dtype": "bf16"}, {"store_dtype": "float16"}, {"weights_sha256": "x" * 64}):
        assert ExtractConfig(**{**BASE, **change}).fingerprint != config.fingerprint, change


def test_config_json_round_trips():
    config = ExtractConfig(**BASE, poolings=("cls", "max"), layers=(-4, -3, -2, -1), normalize=True)
    assert ExtractConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("bad", [{"poolings": ("median",)}, {"poolings": ()}, {"dtype": "int8"},
                                 {"poolings": ("mean", "mean")}, {"max_length": 1}])
def test_invalid_config_is_a_user_error(bad):
    with pytest.raises(FeatxError):
        ExtractConfig(**{**BASE, **bad})


@pytest.mark.parametrize("spec, layers", [("-1", (-1,)), ("-4:", (-4, -3, -2, -1)), ("-4,-1", (-4, -1)),
                                          ("-3:-1", (-3, -2)), (-2, (-2,)), ("0", (0,))])
def test_parse_layers(spec, layers):
    assert parse_layers(spec) == layers


@pytest.mark.parametrize("spec", ["last", "1:", "-2:3", ""])
def test_parse_layers_rejects_nonsense(spec):
    with pytest.raises(FeatxError):
        parse_layers(spec)


def test_a_folders_declared_pooling_is_read_from_either_spelling_or_refused(tmp_path):
    import json

    from featx.backbones.st_modules import DeclaredEmbedding, read_declared

    assert read_declared(tmp_path) == DeclaredEmbedding()  # not a sentence-transformers folder
    (tmp_path / "pool").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "pool", "type": "sentence_transformers.models.Pooling"}]))
    for modes, expected in (({"pooling_mode_cls_token": True}, "cls"),
                            ({"pooling_mode_max_tokens": True}, "max"),
                            ({"pooling_mode_mean_sqrt_len_tokens": True}, "mean_sqrt_len"),
                            ({"pooling_mode": "weightedmean"}, "weightedmean"),
                            ({"pooling_mode": "lasttoken", "include_prompt": False}, "last")):
        (tmp_path / "pool" / "config.json").write_text(json.dumps(modes))
        declared = read_declared(tmp_path)
        assert (declared.pooling, declared.refusal, declared.normalize) == (expected, None, False)
    assert not declared.include_prompt
    (tmp_path / "pool" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True,
                                                               "pooling_mode_cls_token": True}))
    assert "concatenates cls + mean" in read_declared(tmp_path).refusal
