import pytest

from featx.config import ExtractConfig, parse_layers
from featx.errors import FeatxError

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


def test_declared_embedding_is_read_only_when_featx_can_reproduce_it(tmp_path):
    import json

    from featx.backbones import declared_embedding

    assert declared_embedding(tmp_path) == {}  # not a sentence-transformers folder
    (tmp_path / "pool").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "pool", "type": "sentence_transformers.models.Pooling"}]))
    for modes, expected in (({"pooling_mode_cls_token": True}, "cls"),
                            ({"pooling_mode_max_tokens": True}, "max"),
                            ({"pooling_mode_mean_sqrt_len_tokens": True}, None),
                            ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, None)):
        (tmp_path / "pool" / "config.json").write_text(json.dumps(modes))
        assert declared_embedding(tmp_path) == {"declared_pooling": expected, "declared_normalize": False}
