"""Image inputs a hostile user hands featx: 16-bit and float pictures, archives with unsafe
member names, decompression bombs, empty files, and inputs of the wrong modality."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import featx
from featx.featurizers.image import decode_image
from tests.conftest import min_cosine
from tests.faults.conftest import assert_refused, labelled_csv, snapshot


def _digit() -> np.ndarray:
    """A 28 x 28 8-bit grey '7', drawn like an MNIST digit (white stroke on black, soft edges)."""
    image = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(image).line([(20, 24), (92, 24), (48, 96)], fill=255, width=14)
    return np.asarray(image.resize((28, 28), Image.Resampling.LANCZOS))


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png(pixels: np.ndarray, color_type: int, depth: int = 16, size: tuple[int, int] | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 48-bit RGB); `size` may claim another size."""
    height, width = pixels.shape[:2]
    rows = b"".join(b"\0" + pixels[y].astype(">u2" if depth == 16 else np.uint8).tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    width, height = size or (width, height)
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _same_digit_in_every_mode() -> dict[str, bytes]:
    """The digit as an 8-bit PNG and in each wider mode Pillow opens (name -> file bytes)."""
    digit = _digit()
    wide = digit.astype(np.uint16) * 257  # 0..255 -> 0..65535, as a 16-bit export does
    files = {
        "a-8bit.png": _encoded(Image.fromarray(digit), "PNG"),
        "b-I16.png": _encoded(Image.fromarray(wide), "PNG"),  # opens as I;16
        "c-I16B.tif": _encoded(Image.fromarray(wide.astype(">u2")), "TIFF"),  # I;16B
        "d-I32.tif": _encoded(Image.fromarray(wide.astype(np.int32)), "TIFF"),  # I
        "e-RGB48.png": _png(np.stack([wide] * 3, axis=-1), color_type=2),  # 16 bits per channel
        "f-float.tif": _encoded(Image.fromarray(digit.astype(np.float32) / 255), "TIFF"),  # F, 0..1
    }
    modes = {name: Image.open(io.BytesIO(data)).mode for name, data in files.items()}
    assert modes == {"a-8bit.png": "L", "b-I16.png": "I;16", "c-I16B.tif": "I;16B", "d-I32.tif": "I",
                     "e-RGB48.png": "RGB", "f-float.tif": "F"}, modes
    return files


def test_16_bit_32_bit_and_float_images_decode_like_the_8_bit_file(tmp_path):
    """Pillow's convert('RGB') clipped 16-bit values: 8 % of a digit's pixels came out at 255
    and its vector had cosine 0.72 to the 8-bit file's."""
    files = _same_digit_in_every_mode()
    reference = np.asarray(decode_image(files["a-8bit.png"]), dtype=np.int16)
    for name, data in files.items():
        pixels = np.asarray(decode_image(data), dtype=np.int16)
        assert np.abs(pixels - reference).max() <= 1, name
    folder = tmp_path / "digits"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with featx.extract(folder, tmp_path / "digits.h5", model="efficientnet-lite0", dtype="fp32",
                       progress=False) as store:
        vectors, _ = store.load("mean")
        assert store.ids.tolist() == sorted(files)
    for row in range(1, len(files)):
        assert min_cosine(vectors[:1], vectors[row:row + 1]) >= 0.999, store.ids[row]


def test_wide_images_outside_their_nominal_range_use_their_own_range():
    from featx.featurizers.image import to_8bit

    signed = np.array([[-1024, 0], [1000, 3071]], dtype=np.int32)  # CT-like values, mode I
    assert to_8bit(signed).tolist() == [[0, 64], [126, 255]]  # (v + 1024) / 4095 * 255
    twelve_bit = np.array([[0, 4095]], dtype=np.int32)
    assert to_8bit(twelve_bit).tolist() == [[0, 16]]  # 0..65535 holds it: a dark 16-bit picture stays dark
    assert to_8bit(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).tolist() == [[0, 128, 255]]
    with pytest.raises(ValueError, match="NaN"):
        to_8bit(np.array([[0.0, np.nan]], dtype=np.float32))


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # ZipInfo keeps the name as given; writestr(str) would strip a leading /
            archive.writestr(info, data)
    return path


@pytest.mark.parametrize("bad_name", ["/abs/1/x.png", "../1/x.png", "cat/../../x.png", "C:/x/1.png"])
def test_an_archive_with_an_absolute_or_climbing_member_is_refused(cli, tmp_path, tiny_vit_dir, bad_name):
    """An absolute member became a class named '/', and a member with '..' was dropped without a word."""
    good = _encoded(Image.fromarray(_digit()), "PNG")
    archive = _zip(tmp_path / "digits.zip", {"0/a.png": good, "1/b.png": good, bad_name: good})
    before = snapshot(archive)
    result = cli("extract", archive, "-o", tmp_path / "out.h5", "--model", tiny_vit_dir, "-q")
    assert_refused(result, repr(bad_name), "absolute path or one with '..'")
    assert not (tmp_path / "out.h5").exists() and snapshot(archive) == before
    # Also when only another folder of the archive is read: the archive as a whole is refused.
    assert_refused(cli("extract", f"{archive}:0", "-o", tmp_path / "out.h5", "--model", tiny_vit_dir, "-q"),
                   repr(bad_name))


def test_a_decompression_bomb_is_one_line_or_a_counted_skip(cli, tmp_path, tiny_vit_dir):
    """A PNG claiming 100,000 x 100,000 pixels ended in a 65-line DecompressionBombError traceback."""
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    (folder / "fine.png").write_bytes(_encoded(Image.fromarray(_digit()), "PNG"))
    (folder / "bomb.png").write_bytes(_png(np.zeros((1, 1), np.uint8), color_type=0, depth=8,
                                           size=(100_000, 100_000)))
    args = ["extract", tmp_path / "imgs", "-o", tmp_path / "out.h5", "--model", tiny_vit_dir, "--dtype", "fp32", "-q"]
    assert_refused(cli(*args), "bomb.png", "more than 178,956,970 pixels", "--skip-bad")
    assert cli(*args, "--skip-bad").code == 0
    with featx.open_store(tmp_path / "out.h5") as store:
        assert store.skipped.tolist() == [1, 0] and store.ids.tolist() == ["cat/bomb.png", "cat/fine.png"]


def test_messages_name_images_as_given_and_never_an_object_repr(cli, tmp_path, tiny_vit_dir, monkeypatch):
    """A 0-byte image's message held '<_io.BytesIO object at 0x...>', and paths came out absolute."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "empty.png").write_bytes(b"")
    (tmp_path / "imgs" / "cat" / "text.png").write_bytes(b"this is no picture")
    result = cli("extract", "imgs", "-o", "out.h5", "--model", tiny_vit_dir, "-q")
    assert_refused(result, "imgs/cat/empty.png: the file is empty (0 bytes)")
    assert str(tmp_path) not in result.err and "BytesIO" not in result.err
    (tmp_path / "imgs" / "cat" / "empty.png").unlink()
    result = cli("extract", "imgs", "-o", "out2.h5", "--model", tiny_vit_dir, "-q")
    assert_refused(result, "imgs/cat/text.png: not an image format Pillow can read")
    assert str(tmp_path) not in result.err and " at 0x" not in result.err


@pytest.fixture
def image_predictor(tmp_path, tiny_vit_dir):
    rng = np.random.default_rng(0)
    folder = tmp_path / "train-images"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / label / f"{i}.png")
    store = featx.extract(folder, tmp_path / "images.h5", model=str(tiny_vit_dir), dtype="fp32", progress=False)
    featx.Predictor(featx.train_head(store, C=1.0)).save(tmp_path / "image-model")
    return tmp_path / "image-model", folder


@pytest.fixture
def text_predictor(tmp_path, labelled_stores):
    featx.Predictor(featx.train_head(labelled_stores["train"], C=1.0)).save(tmp_path / "text-model")
    return tmp_path / "text-model"


def test_a_predictor_given_the_other_modality_is_one_line(cli, tmp_path, image_predictor, text_predictor):
    """Both ended in an AttributeError traceback."""
    image_model, image_folder = image_predictor
    texts = labelled_csv(tmp_path / "texts.csv")
    assert_refused(cli("predict", text_predictor, image_folder, "-q"), "classifies texts",
                   "is read as images")
    assert_refused(cli("predict", image_model, texts, "-q"), "classifies images", "is read as texts")
    assert_refused(cli("evaluate", text_predictor, image_folder), "classifies texts")
    assert_refused(cli("evaluate", image_model, texts), "classifies images")


def test_predict_does_not_advise_an_option_it_lacks(cli, image_predictor):
    """`featx predict` advised --skip-bad, which only `featx extract` has."""
    image_model, image_folder = image_predictor
    (image_folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = cli("predict", image_model, image_folder, "-q")
    assert_refused(result, "broken.png", "fix or remove it")
    assert "--skip-bad" not in result.err


def test_an_image_model_named_for_texts_says_so(cli, tmp_path):
    """It said the model was 'neither a packaged model nor a local folder'."""
    texts = labelled_csv(tmp_path / "texts.csv")
    assert_refused(cli("extract", texts, "-o", tmp_path / "x.h5", "--model", "efficientnet-lite0", "-q"),
                   "efficientnet-lite0 is an image model, and the input holds texts")
    assert not (tmp_path / "x.h5").exists()
