"""Texts over max_length: counted when cut, or embedded whole as overlapping windows (--long chunk)."""
import itertools

import numpy as np
import pytest

import featx
from featx.errors import ParameterError
from featx.extraction.runners import CpuRunner
from featx.featurizers import TextFeaturizer
from featx.featurizers.text import tokenize_windows
from featx.modalities.text import make_config
from tests.conftest import write_lines

LONG = " ".join(f"word{i % 37} and more" for i in range(60))  # about 250 tokens


def test_windows_overlap_by_the_stride_and_cover_the_whole_text(tiny_backbone):
    tokenizer = tiny_backbone.tokenizer
    (windows,) = tokenize_windows(tokenizer, [LONG], max_length=32, stride=8)
    whole = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    inner = [w[1:-1] for w in windows]  # [CLS] ... [SEP] around each window
    assert all(len(w) <= 32 for w in windows) and len(windows) > 5
    assert all(a[-8:] == b[:8] for a, b in itertools.pairwise(inner))  # consecutive windows share 8 tokens
    rebuilt = inner[0] + [t for w in inner[1:] for t in w[8:]]
    assert rebuilt == whole
    assert tokenize_windows(tokenizer, ["short text"], 32, 8) == [[tokenizer("short text")["input_ids"]]]


@pytest.mark.parametrize("how", ["mean", "max"])
def test_a_chunked_row_is_the_pooled_vectors_of_its_windows(tiny_backbone, how):
    texts = ["a short one", LONG, "", LONG[:300]]
    chunked_config = make_config(tiny_backbone, pooling="mean,cls", max_length=32, dtype="fp32", normalize=True,
                                 long="chunk", stride=8, long_pooling=how)
    chunked = TextFeaturizer(tiny_backbone, chunked_config)
    records = [featx.data.Record(i, t, -1) for i, t in enumerate(texts)]
    items, flags = chunked.prepare(records)
    assert flags["truncated"].tolist() == [0, 0, 0, 0] and "skipped" not in flags  # nothing is cut, nothing unread
    assert [len(item) for item in items][:2] == [1, len(items[1])]
    got = CpuRunner(256).run(chunked, items)
    plain = TextFeaturizer(tiny_backbone, make_config(tiny_backbone, pooling="mean,cls", max_length=32, dtype="fp32",
                                                      normalize=False))
    for row, windows in enumerate(items):
        per_window = CpuRunner(10_000).run(plain, windows)  # each window alone, unnormalised
        for name in ("mean", "cls"):
            expected = per_window[name].mean(0) if how == "mean" else per_window[name].max(0)
            expected = expected / np.linalg.norm(expected)
            np.testing.assert_allclose(got[name][row], expected, atol=1e-5)


def test_chunk_is_in_the_fingerprint_and_the_store_says_what_it_cost(tiny_backbone, tmp_path):
    path = write_lines(tmp_path / "in.txt", ["short", LONG, "medium length text here", LONG])
    options = dict(model=tiny_backbone, pooling="mean", max_length=32, dtype="fp32", progress=False)
    with featx.extract(path, tmp_path / "cut.h5", **options) as cut, \
            featx.extract(path, tmp_path / "chunk.h5", long="chunk", **options) as chunk:
        assert cut.info()["truncated_rows"] == 2 and chunk.info()["truncated_rows"] == 0
        assert cut.fingerprint != chunk.fingerprint
        assert "long" not in cut.info()["config"] and chunk.info()["config"]["long_stride"] == 8
        from featx.store import format_info

        assert "windows sharing 8 tokens, mean-pooled" in format_info(chunk.info())
        assert chunk.info()["timings"]["cost_units"] > 3 * cut.info()["timings"]["cost_units"]
        np.testing.assert_allclose(chunk.load("mean")[0][[0, 2]], cut.load("mean")[0][[0, 2]], atol=1e-6)
        assert not np.allclose(chunk.load("mean")[0][1], cut.load("mean")[0][1], atol=1e-3)


def test_bad_long_settings_name_their_flag(tiny_backbone):
    with pytest.raises(ParameterError, match="stride must be at least 0 and at most 16 \\(half of --max-length 32"):
        make_config(tiny_backbone, max_length=32, long="chunk", stride=20)
    with pytest.raises(ParameterError, match="stride applies to --long chunk only"):
        make_config(tiny_backbone, max_length=32, stride=4)
    with pytest.raises(ParameterError, match="long must be one of truncate, chunk, got 'window'"):
        make_config(tiny_backbone, long="window")
