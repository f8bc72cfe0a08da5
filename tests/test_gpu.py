"""The engine on a GPU gives the CPU's vectors (run where a GPU is lent: pytest -m gpu)."""
import pytest

import featx
from tests.conftest import min_cosine, write_lines

pytestmark = pytest.mark.gpu


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
        assert min_cosine(vectors["cuda"][name], vectors["cpu"][name]) >= floor, name
