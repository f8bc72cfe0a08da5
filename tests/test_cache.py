"""The content-hash cache: only new texts are embedded, and the vectors do not change."""
import numpy as np

import featx
from tests.conftest import write_lines


def test_cache_embeds_only_new_texts_and_gives_uncached_vectors(tmp_path, tiny_backbone):
    first = [f"first set sentence {i}" for i in range(60)]
    second = first[10:40] + [f"new sentence {i}" for i in range(25)] + first[:3]  # 33 seen, 25 new
    a = write_lines(tmp_path / "a.txt", first)
    b = write_lines(tmp_path / "b.txt", second)
    options = dict(model=tiny_backbone, pooling="mean,max", dtype="fp32", window_rows=16, progress=False)
    with featx.extract(a, tmp_path / "a.h5", cache_dir=tmp_path / "cache", **options) as store:
        assert store.info()["timings"]["cache_hits"] == 0
    with featx.extract(b, tmp_path / "b.h5", cache_dir=tmp_path / "cache", **options) as cached, \
            featx.extract(b, tmp_path / "b-plain.h5", **options) as plain:
        assert cached.info()["timings"]["cache_hits"] == 33
        for name in ("mean", "max"):
            np.testing.assert_allclose(cached.load(name)[0], plain.load(name)[0], atol=1e-5)
    with featx.extract(b, tmp_path / "b-again.h5", cache_dir=tmp_path / "cache", **options) as again:
        assert again.info()["timings"]["cache_hits"] == len(second)
