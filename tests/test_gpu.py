"""The engine on a GPU gives the CPU's vectors (run where a GPU is lent: pytest -m gpu)."""
import numpy as np
import pytest

import featx
from tests.conftest import write_lines

pytestmark = pytest.mark.gpu


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


@pytest.mark.parametrize("dtype, floor", [("fp32", 0.99999), ("bf16", 0.999)])
def test_cuda_extraction_equals_the_cpu_reference(tmp_path, dtype, floor):
    source = featx.open_input("sst2:dev")
    texts = [record.text for record in source.records(source.scan())]
    path = write_lines(tmp_path / "dev.txt", texts)
    vectors = {}
    for device, compute in (("cpu", "fp32"), ("cuda", dtype)):
        with featx.extract(path, tmp_path / f"{device}.h5", pooling="mean,cls", dtype=compute, device=device,
                           progress=False) as store:
            assert store.info()["hardware"]["device"].startswith(device)
            vectors[device] = {name: store.load(name)[0] for name in ("mean", "cls")}
    for name in ("mean", "cls"):
        assert _min_cosine(vectors["cuda"][name], vectors["cpu"][name]) >= floor, name
