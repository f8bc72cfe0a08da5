"""Writers exclude each other without a race; a damaged file is not mistaken for a lock; Ctrl-C
at any moment, start-up included, ends in one line and status 130."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from featx.errors import FeatxError
from tests.conftest import write_lines
from tests.faults.conftest import assert_refused, labelled_csv, tiny_args


def test_a_process_that_opened_the_lock_file_early_cannot_lock_beside_a_new_writer(tmp_path):
    from featx.store.lock import WriterLock

    store = tmp_path / "s.h5"
    first = WriterLock(store)
    early = os.open(store.with_name("s.h5.lock"), os.O_RDWR)  # opened while the first writer holds it
    first.release()
    second = WriterLock(store)  # the next writer, after the first one finished
    try:
        # With a lock file removed on release, `early` would lock the removed file while `second`
        # holds a new one: two writers. The file is never removed, so this must fail.
        with pytest.raises(BlockingIOError):
            fcntl.flock(early, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FeatxError, match="being written by another process"):
            WriterLock(store)
    finally:
        os.close(early)
        second.release()


def test_lock_file_removed_by_hand_is_recreated(tmp_path):
    from featx.store.lock import WriterLock

    store = tmp_path / "s.h5"
    WriterLock(store).release()
    (tmp_path / "s.h5.lock").unlink()
    lock = WriterLock(store)
    assert (tmp_path / "s.h5.lock").exists()
    lock.release()


def test_truncated_store_is_reported_as_damaged_at_once_not_as_locked(cli, tmp_path, tiny_bert_dir):
    source = labelled_csv(tmp_path / "in.csv")
    out = tmp_path / "s.h5"
    assert cli("extract", source, "-o", out, *tiny_args(tiny_bert_dir)).code == 0
    out.write_bytes(out.read_bytes()[:3000])
    result = cli("extract", source, "-o", out, *tiny_args(tiny_bert_dir))
    assert_refused(result, "is damaged: the file is truncated", "remove it and extract again")
    assert "locked" not in result.err
    assert_refused(cli("info", out), "is damaged: the file is truncated")
    out.unlink()  # the advice, followed
    assert cli("extract", source, "-o", out, *tiny_args(tiny_bert_dir)).code == 0


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 3.0])
def test_ctrl_c_at_any_moment_ends_in_one_line(tmp_path, tiny_bert_dir, delay):
    source = write_lines(tmp_path / "in.txt", [f"row {i} " + "word " * (i % 11) for i in range(30_000)])
    command = [sys.executable, "-m", "featx", "extract", str(source), "-o", str(tmp_path / "s.h5"),
               *tiny_args(tiny_bert_dir)]
    # A test run started in the background (`pytest &` in a script) inherits SIGINT ignored, and so
    # would featx: give the child the default disposition, as a terminal's foreground job has.
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert "Traceback" not in err
    if child.returncode == -signal.SIGINT:  # before Python's own handler existed: no output at all
        assert err == ""
    else:
        assert child.returncode == 130, err
        assert err.startswith("featx: interrupted") and err.count("\n") == 1, err


def test_the_command_line_starts_without_torch_transformers_or_h5py():
    """A Ctrl-C while torch imports comes before featx's handler exists; the command's import must
    stay light (importing the fine-tuning recipe's ranges once pulled torch in, and a Ctrl-C half a
    second in printed a KeyboardInterrupt traceback)."""
    code = "import sys, featx.cli; print(sorted({'torch', 'transformers', 'h5py'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)


_START_UP = """
import os, signal, sys
sys.argv = ["featx", "extract", sys.argv[1], "-o", sys.argv[2]]
target = os.environ["INTERRUPT_AT_IMPORT_OF"]


class InterruptAtImport:
    def find_spec(self, name, path=None, target_spec=None):
        if name == target:
            os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands while this import runs
        return None


sys.meta_path.insert(0, InterruptAtImport())
from featx.cli import main
main()
"""


@pytest.mark.parametrize("module", ["click", "numpy", "featx.atomic", "featx.cli.commands", "featx.cli.models"])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, module):
    """A Ctrl-C in the first ~0.3 s of `featx extract`, while featx.cli imported, printed a
    KeyboardInterrupt traceback (rc -2); here the interrupt lands exactly inside one import."""
    source = write_lines(tmp_path / "in.txt", ["a row"])
    done = subprocess.run([sys.executable, "-c", _START_UP, str(source), str(tmp_path / "s.h5")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "INTERRUPT_AT_IMPORT_OF": module},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130, done.stderr
    assert done.stderr.startswith("featx: interrupted") and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "s.h5").exists()


def test_a_program_importing_featx_cli_keeps_its_own_ctrl_c():
    code = "import signal, featx.cli; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize("command", ["predict", "info"])
def test_a_closed_standard_output_ends_quietly(tmp_path, labelled_stores, command):
    """`featx predict ... | head -1` printed `featx: error: Broken pipe` and exited 2: a reader
    that has read enough is no user error. Exit 141, as a tool ended by SIGPIPE, and say nothing."""
    import featx

    store = labelled_stores["test"]
    if command == "predict":
        featx.Predictor(featx.train_head(store, C=1.0)).save(tmp_path / "model")
        source = write_lines(tmp_path / "in.txt", [f"great lovely film {i}" for i in range(3000)])
        args = ["predict", str(tmp_path / "model"), str(source), "-q"]
    else:
        args = ["info", str(store.path), "--json"]
    child = subprocess.Popen([sys.executable, "-m", "featx", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    child.stdout.close()  # the reader has gone before the first line: every write meets a closed pipe
    err = child.stderr.read()
    child.wait(timeout=120)
    assert child.returncode == 141 and err == "", (child.returncode, err)


def test_rates_leave_out_the_time_the_process_was_stopped(tmp_path, tiny_bert_dir):
    """An extraction stopped (Ctrl-Z, SIGSTOP) and continued read 10 rows/s: the stop counted as work.
    No speed is asserted: the store says how long it was stopped, and its figures leave that out,
    so they and the stop fit inside the child's lifetime (they overran it by the stop before)."""
    import featx

    source = write_lines(tmp_path / "in.txt", [f"row {i} " + "word " * (i % 11) for i in range(6_000)])
    out = tmp_path / "s.h5"
    command = [sys.executable, "-m", "featx", "extract", str(source), "-o", str(out), *tiny_args(tiny_bert_dir)]
    started = time.monotonic()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    while not out.exists() and child.poll() is None:  # the store is open: rows are being embedded
        time.sleep(0.05)
    child.send_signal(signal.SIGSTOP)
    time.sleep(8.0)
    child.send_signal(signal.SIGCONT)
    _, err = child.communicate(timeout=300)
    lifetime = time.monotonic() - started
    assert child.returncode == 0, err
    with featx.open_store(out) as store:
        timings = store.info()["timings"]
    assert 7.5 <= timings["stopped_s"] <= 8.0 + 2.0, timings  # the 8 s stop, measured by the ticks around it
    assert timings["total_s"] + timings["stopped_s"] <= lifetime, (timings, lifetime)
    assert timings["rows_per_s"] == pytest.approx(6_000 / timings["extract_s"], rel=1e-3)



def test_a_stop_counts_as_soon_as_its_sigcont_is_handled():
    """A time stamp taken after SIGCONT but before the stop watch's next tick read the clock as if
    the stop had not happened; an interval from it to a later stamp came out short by the stop, and
    an extraction stopped right as its store opened recorded a negative extract_s (CI, once)."""
    import featx.progress as progress

    watch = progress._StopWatch()  # not started: no ticker thread, so only stopped() can observe
    watch._last = time.monotonic() - 8.3  # the process was stopped 8.3 s ago, and has just continued
    watch._continued = 1  # the SIGCONT handler has run
    assert 8.0 < watch.stopped() < 8.5
    assert watch.stopped() == watch.stopped()  # counted once


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (joblib's workers of a featx train), from /proc."""
    found = set()
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(stat))
    return found


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # it ended meanwhile
        return b""


def test_a_terminated_train_takes_its_worker_processes_with_it(tmp_path, labelled_stores):
    """SIGTERM (a scheduler's stop, `kill`) to `featx train --jobs 2` left joblib's workers running,
    orphaned, for as long as their heads took; featx now ends them, says so in one line and exits 143."""
    slow = "mlp:max_epochs=100000,patience=100000,batch_size=8"
    command = [sys.executable, "-m", "featx", "train", str(labelled_stores["train"].path), "--val",
               str(labelled_stores["dev"].path), "-o", str(tmp_path / "heads"), "--head", slow, "--head",
               f"{slow},hidden=64", "--jobs", "2"]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while len(workers) < 2 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.5)
            workers = {pid for pid in _children(child.pid) if b"LokyProcess" in _command_line(pid)}
        assert len(workers) >= 2 and child.poll() is None, "the heads should still be training"
        time.sleep(2)  # the workers are inside their fits
        child.send_signal(signal.SIGTERM)
        # (Before, the workers also held the stderr pipe open: this waited for them, and timed out.)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 143 and err.startswith("featx: terminated") and err.count("\n") == 1, err
        deadline = time.monotonic() + 20
        while any(_command_line(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in workers if _command_line(pid)] == [], "joblib workers outlived the featx process"
    finally:  # never leave a process running after the test, whatever it found
        for pid in [child.pid, *workers]:
            if _command_line(pid):
                os.kill(pid, signal.SIGKILL)
    assert not (tmp_path / "heads").exists() or not any((tmp_path / "heads").iterdir())


_IN_TORCH_IMPORT = """
import os, signal, sys, time
import featx.cli
signal.signal(signal.SIGINT, featx.cli._on_interrupt)
module = compile("import featx.cli, sys; featx.cli._on_interrupt(2, sys._getframe()); print('deferred', flush=True)",
                 os.path.join("site-packages", "torch", "distributed", "__init__.py"), "exec")
exec(module, {})
try:
    time.sleep(5)
except KeyboardInterrupt:
    print("raised after the import")
"""


def test_a_ctrl_c_during_torchs_import_is_raised_after_it():
    """Raised inside torch's C++ start-up, a KeyboardInterrupt aborted the process ('terminate called after
    throwing an instance of pybind11::error_already_set'; a full run hit it at 1.5 s): featx asks again
    once the import has moved on, and the interrupt ends the command as any other."""
    done = subprocess.run([sys.executable, "-c", _IN_TORCH_IMPORT], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.stdout.split("\n")[:2] == ["deferred", "raised after the import"], (done.stdout, done.stderr)
