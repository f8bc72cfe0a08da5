"""On a GPU, featx gives the CPU's vectors and trains (run where a GPU is lent: pytest -m gpu).

Each test runs the same work on the CPU in fp32 and on CUDA, and compares: extraction of texts
(MiniLM, short and chunked long inputs) and images (a tiny random ViT), a fine-tune of a tiny BERT,
and a head trained from a CUDA store then used by a predictor that embeds on the GPU.
"""
import numpy as np
import pytest

import featx
from featx.data.images import ArraySource
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
            assert store.config.dtype == compute
            vectors[device] = {name: store.load(name)[0] for name in ("mean", "cls")}
    for name in ("mean", "cls"):
        assert min_cosine(vectors["cuda"][name], vectors["cpu"][name]) >= floor, name


def test_cuda_long_chunked_extraction_equals_the_cpu(tmp_path):
    """Windows of long inputs, several per row, pooled the same on both devices."""
    words = "the film is long and the plot wanders but the cast is good".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.integers(5, 900, size=40)]
    path = write_lines(tmp_path / "long.txt", texts)
    vectors = {}
    for device in ("cpu", "cuda"):
        with featx.extract(path, tmp_path / f"{device}.h5", long="chunk", max_length=128, dtype="fp32",
                           device=device, progress=False) as store:
            vectors[device] = store.load()[0]
    assert vectors["cuda"].shape == (40, 384)
    assert min_cosine(vectors["cuda"], vectors["cpu"]) >= 0.99999


def test_cuda_image_extraction_equals_the_cpu(tmp_path, tiny_vit_dir):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(24)]
    vectors = {}
    for device, dtype in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda-bf16", "bf16")):
        with featx.extract(ArraySource(arrays), tmp_path / f"{device}.h5", model=str(tiny_vit_dir),
                           pooling="cls,mean", dtype=dtype, device=device.split("-")[0], progress=False) as store:
            vectors[device] = {name: store.load(name)[0] for name in ("cls", "mean")}
    for name in ("cls", "mean"):
        assert min_cosine(vectors["cuda"][name], vectors["cpu"][name]) >= 0.99999, name
        assert min_cosine(vectors["cuda-bf16"][name], vectors["cpu"][name]) >= 0.99, name


def test_cuda_finetune_learns_and_its_checkpoint_predicts_on_either_device(tiny_bert_dir, toy_inputs, tmp_path):
    from featx.finetune import FinetuneConfig, finetune
    from featx.finetune.texts import FinetunedPredictor

    config = FinetuneConfig(model=str(tiny_bert_dir), epochs=3, lr=1e-3, batch_size=16, max_length=16,
                            dtype="bf16", seed=0)
    record = finetune(featx.open_input(toy_inputs["train"]), tmp_path / "ft", val=featx.open_input(toy_inputs["dev"]),
                      config=config, device="cuda", progress=False)
    assert record["hardware"]["device"].startswith("cuda")
    losses = record["losses"]
    assert np.isfinite(losses).all() and np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    texts = ["great lovely superb movie", "awful dull boring movie"]
    on_gpu = FinetunedPredictor(tmp_path / "ft", device="cuda").predict_proba(texts)
    on_cpu = FinetunedPredictor(tmp_path / "ft", device="cpu").predict_proba(texts)
    assert np.allclose(on_gpu, on_cpu, atol=0.05)
    assert FinetunedPredictor(tmp_path / "ft", device="cuda").predict(texts).tolist() == ["pos", "neg"]


def test_a_head_trained_on_a_cuda_store_predicts_through_the_gpu(tmp_path, tiny_bert_dir, toy_inputs):
    from featx.predictor import Predictor

    stores = {}
    for split in ("train", "dev"):
        stores[split] = featx.extract(toy_inputs[split], tmp_path / f"{split}.h5", model=str(tiny_bert_dir),
                                      dtype="fp32", device="cuda", progress=False)
    head = featx.train_head(stores["train"], kind="logreg")
    predictor = Predictor(head, device="cuda")
    dev = featx.open_input(toy_inputs["dev"])
    texts = [record.text for record in dev.records(dev.scan())]
    assert np.allclose(predictor.predict_proba(texts), head.predict_proba(stores["dev"]), atol=1e-4)
