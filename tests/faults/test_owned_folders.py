"""Folders featx replaces are only ever its own (issue 30, case 2 and 8): a user's NAME.old or
NAME.part is never renamed, replaced or removed, and an empty folder at the target (a mount
point among them) is filled in place instead of being renamed aside."""
import os
import signal
import subprocess
import sys
import time

import pytest

from featx.atomic import atomic_file, atomic_folder
from tests.faults.conftest import snapshot, tmpfs


def _user_folder(path, text):
    path.mkdir()
    (path / "notes.txt").write_text(text)
    return path


def test_export_keeps_the_users_results_old_backup(tmp_path, labelled_stores, cli):
    """The exact story: a user moves an earlier folder aside with `mv results results.old`,
    then exports into `results`; their backup is theirs."""
    results = tmp_path / "results"
    _user_folder(tmp_path / "results.old", "my earlier work")
    _user_folder(tmp_path / "results.part", "my half-done work")
    before = snapshot(tmp_path / "results.old", tmp_path / "results.part")
    for _ in range(2):  # the first export, then a replacement
        result = cli("export", str(labelled_stores["dev"].path), "-o", str(results), "--overwrite")
        assert result.code == 0, result.err
        assert (results / "featx-export.json").is_file()
    assert snapshot(tmp_path / "results.old", tmp_path / "results.part") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "results.old", "results.part"]


def test_train_export_keeps_the_users_old_and_part_folders(tmp_path, labelled_stores, cli):
    _user_folder(tmp_path / "model.old", "backup")
    (tmp_path / "model.part").write_text("a file of mine")
    before = snapshot(tmp_path / "model.old", tmp_path / "model.part")
    for _ in range(2):
        result = cli("train", str(labelled_stores["train"].path), "-o", str(tmp_path / "runs"), "--head", "logreg",
                     "--val", str(labelled_stores["dev"].path), "--export", str(tmp_path / "model"))
        assert result.code == 0, result.err
        assert (tmp_path / "model" / "predictor.json").is_file()
    assert snapshot(tmp_path / "model.old", tmp_path / "model.part") == before


def test_an_atomic_file_never_writes_over_the_users_part_file(tmp_path):
    (tmp_path / "out.jsonl.part").write_text("mine")
    with atomic_file(tmp_path / "out.jsonl") as partial:
        partial.write_text("featx's")
    assert (tmp_path / "out.jsonl").read_text() == "featx's"
    assert (tmp_path / "out.jsonl.part").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.part"]


def test_an_empty_folder_is_filled_in_place(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    inode = target.stat().st_ino
    with atomic_folder(target) as partial:
        (partial / "weights.bin").write_bytes(b"w")
        (partial / "head.json").write_text("{}")
    assert target.stat().st_ino == inode  # the same folder, never renamed
    assert sorted(p.name for p in target.iterdir()) == ["head.json", "weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_failed_save_into_an_empty_folder_leaves_it_empty(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    with pytest.raises(RuntimeError), atomic_folder(target) as partial:
        (partial / "weights.bin").write_bytes(b"w")
        raise RuntimeError("a failure half-way")
    assert list(target.iterdir()) == []


def test_export_into_an_empty_mount_point_fills_it(tmp_path, labelled_stores, cli):
    with tmpfs(tmp_path / "mnt", "8m") as mount:
        result = cli("export", str(labelled_stores["dev"].path), "-o", str(mount))
        assert result.code == 0, result.err
        assert (mount / "featx-export.json").is_file()
        assert not [p.name for p in mount.iterdir() if "featx-part" in p.name]


_SAVE_LOOP = """
import sys
from pathlib import Path
from featx.atomic import atomic_folder
print("ready", flush=True)
i = 0
while True:
    i += 1
    with atomic_folder(sys.argv[1]) as partial:
        (Path(partial) / "n.txt").write_text(str(i))
"""


def test_a_kill_mid_save_is_recovered_by_the_next_save_without_touching_user_folders(tmp_path):
    target = tmp_path / "out"
    _user_folder(tmp_path / "out.old", "mine")
    before = snapshot(tmp_path / "out.old")
    for delay in (0.05, 0.1, 0.2, 0.3):
        child = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(target)], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with atomic_folder(target) as partial:
            (partial / "n.txt").write_text("final")
        assert (target / "n.txt").read_text() == "final"
        leftovers = [p.name for p in tmp_path.iterdir() if ".featx-" in p.name]
        assert leftovers == [], leftovers  # a dead process's scratch is featx's own: cleared
    assert snapshot(tmp_path / "out.old") == before
    assert os.listdir(tmp_path / "out.old") == ["notes.txt"]
