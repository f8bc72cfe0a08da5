"""One pooling rule for image outputs (featx.pooling.pool_image_output): extraction and the
fine-tuning baseline pool the same tokens, register tokens included; synthetic images only."""
import numpy as np
import pytest
import torch

import featx


@pytest.fixture(scope="module")
def registers_vit_dir(tmp_path_factory):
    """A 2-block random ViT with 4 register tokens (DINOv2 with registers) on 32 x 32 inputs."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel, ViTImageProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("registers-vit")
    config = Dinov2WithRegistersConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, num_register_tokens=4)
    Dinov2WithRegistersModel(config).save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def synthetic_images(folder, n=6):
    """`n` random 40 x 40 PNGs in two class folders, made on the spot (no shared data needed)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"class{i % 2}" / f"{i}.png")
    return folder


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_fine_tuning_pools_the_tokens_extraction_pools_on_a_vit_with_register_tokens(tmp_path, registers_vit_dir,
                                                                                      pooling):
    from featx.backbones.vision import load_image_backbone
    from featx.featurizers.image import decode_image, model_inputs
    from featx.finetune.images import ImageClassifier

    images = synthetic_images(tmp_path / "images")
    with featx.extract(images, tmp_path / "s.h5", model=str(registers_vit_dir), pooling=pooling, dtype="fp32",
                       progress=False) as store:
        extracted, ids = store.load()[0], store.ids.tolist()
    backbone = load_image_backbone(str(registers_vit_dir), device="cpu")
    pixels = torch.from_numpy(np.stack(model_inputs(backbone, [decode_image((images / i).read_bytes())
                                                               for i in ids])))
    classifier = ImageClassifier(backbone, n_classes=2, pooling=pooling).eval()
    assert classifier.prefix == 5  # the class token and 4 registers, before 16 patches
    with torch.no_grad():
        tuned = classifier.features(pixels).numpy()
    np.testing.assert_allclose(tuned, extracted, atol=1e-5)


def test_a_pooling_that_does_not_fit_the_models_output_is_one_line_for_fine_tuning(registers_vit_dir):
    from featx.backbones.vision import load_image_backbone
    from featx.errors import ParameterError
    from featx.pooling import pool_image_output

    with pytest.raises(ValueError, match="cls does not apply"):
        pool_image_output(torch.zeros(2, 8, 4, 4), "cls")  # a convolutional map has no class token
    backbone = load_image_backbone(str(registers_vit_dir), device="cpu")
    from featx.finetune.images import ImageClassifier

    with pytest.raises(ParameterError, match="last does not apply"):
        ImageClassifier(backbone, n_classes=2, pooling="last")
