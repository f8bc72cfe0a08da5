"""Images from Python: extract a CIFAR-10 sample once, train a head, classify raw images.

    pip install -e ".[vision]"
    python examples/images_python.py ../shared/data/cifar10/cifar10-jpg.zip

Takes about two minutes on 2 CPU cores (1,000 + 200 images through EfficientNet-Lite0).
"""
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import featx


def sample(archive: Path, part: str, per_class: int, folder: Path) -> Path:
    """The first `per_class` images of each class of one part of the zip, as <class>/<file>.jpg."""
    with zipfile.ZipFile(archive) as source:
        names = sorted(n for n in source.namelist() if n.startswith(f"{part}/") and n.endswith(".jpg"))
        taken: dict[str, int] = {}
        for name in names:
            label = name.split("/")[1]
            if taken.get(label, 0) < per_class:
                taken[label] = taken.get(label, 0) + 1
                (folder / label).mkdir(parents=True, exist_ok=True)
                (folder / label / Path(name).name).write_bytes(source.read(name))
    return folder


def main(archive: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="featx-images-"))
    train = sample(archive, "train", 100, work / "train")
    test = sample(archive, "test", 20, work / "test")

    # 1. Extract once with the packaged EfficientNet-Lite0 (a zip works as well: "cifar10-jpg.zip:train").
    train_store = featx.extract(train, work / "train.h5", progress=False)
    test_store = featx.extract(test, work / "test.h5", progress=False)
    print(train_store, "\n", test_store)

    # 2. Train a head on the cache and score it.
    head = featx.train_head(train_store, "logreg", seed=0)
    print("logreg test accuracy:", round(head.evaluate(test_store)["accuracy"], 4))

    # 3. A predictor classifies images as bytes, uint8 arrays or PIL images.
    predictor = featx.Predictor(head)
    images = [Image.open(path) for path in sorted((test / "cat").glob("*.jpg"))[:3]]
    print("three cats:", list(predictor.predict(images)))

    # 4. Any torch module, with its preprocessing declared (it is part of the store's fingerprint).
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3))
    backbone = featx.module_backbone(tiny, featx.ImagePreprocess(size=32, crop=32, mean=(127.0,) * 3,
                                                                 std=(128.0,) * 3), name="tiny-random-cnn")
    arrays = [np.asarray(image.convert("RGB")) for image in images]
    with featx.extract(featx.ArraySource(arrays), work / "tiny.h5", model=backbone, progress=False) as store:
        print("a random CNN on three arrays:", store.load()[0].shape, "fingerprint", store.fingerprint[:12])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cifar10/cifar10-jpg.zip"))
