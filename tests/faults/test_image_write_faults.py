"""Write faults on an image store: the per-row `skipped` flags are committed like every other dataset."""
import h5py
import numpy as np
import pytest
from PIL import Image

from tests.faults.conftest import assert_refused, snapshot
from tests.faults.test_write_faults import FailAt, _patch_dataset

ROWS = 24
BROKEN = "a/0010.png"  # sorted 11th: in window 2 (rows 8..15), so its skipped flag of 1 is written there


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images") / "in"
    rng = np.random.default_rng(0)
    for i in range(ROWS):
        path = folder / ("a" if i < 12 else "b") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.relative_to(folder).as_posix() == BROKEN:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return folder


def args(images, out, model):
    return ["extract", images, "-o", out, "--model", model, "--dtype", "fp32", "--window-rows", "8", "--skip-bad", "-q"]


@pytest.mark.parametrize("silent", [False, True], ids=["ENOSPC", "dropped silently"])
def test_a_failed_skipped_flag_write_keeps_committed_rows_and_the_rerun_is_whole(cli, tmp_path, monkeypatch, images,
                                                                                 tiny_vit_dir, silent):
    reference = tmp_path / "ref.h5"
    assert cli(*args(images, reference, tiny_vit_dir)).code == 0
    out = tmp_path / "s.h5"
    before = snapshot(images)
    with monkeypatch.context() as patch:
        _patch_dataset(patch, "/skipped", FailAt(2, silent=silent))
        failed = cli(*args(images, out, tiny_vit_dir))
    reason = "did not read back as written" if silent else "No space left on device"
    assert_refused(failed, f"writing {out} failed", reason, "8 committed rows are kept")
    with h5py.File(out, "r") as f:
        assert (int(f.attrs["n_done"]), bool(f.attrs["complete"])) == (8, False)
    assert cli(*args(images, out, tiny_vit_dir)).code == 0
    with h5py.File(out, "r") as got, h5py.File(reference, "r") as want:
        assert got["skipped"][:].tolist() == want["skipped"][:].tolist() == [int(i == 10) for i in range(ROWS)]
        for name in ("ids", "labels", "content_sha256", "features/cls"):
            np.testing.assert_array_equal(got[name][:], want[name][:], err_msg=name)
    assert snapshot(images) == before
