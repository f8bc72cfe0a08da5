"""Shared fixtures: a tiny random BERT and a tiny random ViT built on the spot, the real MiniLM, the shared data."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import featx
from featx.cli import main

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped, with the reason, where torch sees no CUDA device."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _featx_cache_in_tmp(tmp_path_factory):
    """featx's own cache folder (file hashes) in a temporary folder, for this process and the CLI's children."""
    os.environ["FEATX_CACHE"] = str(tmp_path_factory.mktemp("featx-cache"))
    yield


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT (hidden 32) saved with the real MiniLM tokenizer; no download."""
    from featx.bench.models import random_bert

    return random_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_backbone(tiny_bert_dir):
    from featx import load_backbone

    return load_backbone(str(tiny_bert_dir), device="cpu")


@pytest.fixture(scope="session")
def minilm():
    from featx import load_backbone

    return load_backbone("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets: $FEATX_DATA, else ../shared/data beside the repo."""
    folder = Path(os.environ.get("FEATX_DATA", REPO.parent / "shared" / "data"))
    if not (folder / "README.md").is_file():
        pytest.skip(f"real data not found at {folder} (set FEATX_DATA to the shared data folder)")
    return folder


@pytest.fixture
def sentences() -> list[str]:
    """Texts of very different lengths, so batches really differ in padding."""
    base = ["a fine film", "dull", "an utterly charming , funny and moving picture that earns every minute",
            "", "the plot , such as it is , never quite comes together , and the cast looks bored throughout ."]
    return [f"{text} {i}" if i % 3 else text for i, text in enumerate(base * 9)]


@pytest.fixture(scope="session")
def labelled_stores(tmp_path_factory, tiny_backbone):
    """Train/dev/test stores of a tiny model over separable synthetic sentences."""
    folder = tmp_path_factory.mktemp("stores")
    words = {"pos": ["great", "lovely", "superb", "fine"], "neg": ["awful", "dull", "bad", "boring"],
             "mid": ["average", "okay", "plain", "so-so"]}
    rng = np.random.default_rng(0)
    stores = {}
    for split, n in (("train", 240), ("dev", 60), ("test", 90)):
        lines = ["text,label"]
        for i in range(n):
            label = ["pos", "neg", "mid"][i % 3]
            lines.append(f"{' '.join(rng.choice(words[label], size=4))} film,{label}")
        path = write_lines(folder / f"{split}.csv", lines)
        stores[split] = featx.extract(path, folder / f"{split}.h5", model=tiny_backbone, pooling="mean,cls",
                                      dtype="fp32", progress=False)
    return stores


@pytest.fixture(scope="session")
def toy_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    words = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "dull", "boring"]}
    paths = {}
    for split, n in (("train", 192), ("dev", 48)):
        lines = ["text,label"] + [f"{' '.join(rng.choice(words[lab], size=3))} movie,{lab}"
                                  for lab in ("pos", "neg") * (n // 2)]
        paths[split] = write_lines(folder / f"{split}.csv", lines)
    return paths


def tiny_extract_command(path: Path, out: Path, model_dir: Path, pooling: str) -> tuple[list[str], dict]:
    """A `featx extract` subprocess on the tiny model in windows of 8 rows, and its environment."""
    import sys

    command = [sys.executable, "-m", "featx", "extract", str(path), "-o", str(out), "--model", str(model_dir),
               "--pooling", pooling, "--dtype", "fp32", "--window-rows", "8", "--batch-tokens", "64", "-q"]
    return command, {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


CHILD_LIMIT_S = 300  # a featx child a test starts runs for seconds; one still running after this has hung


def run_to_end(command: list[str], env: dict, limit_s: float = CHILD_LIMIT_S) -> None:
    """Run a featx command a test needs to finish; it must exit 0. One that hangs is made to print
    its threads' stacks (SIGABRT under PYTHONFAULTHANDLER, into the test's captured stderr) and
    fails the test within `limit_s`, instead of holding the suite until CI's own limit."""
    import signal
    import subprocess

    process = subprocess.Popen(command, env={**env, "PYTHONFAULTHANDLER": "1"})
    try:
        code = process.wait(limit_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait()
        pytest.fail(f"{' '.join(command[2:4])} still ran after {limit_s:.0f} s: its stacks are in the captured stderr")
    assert code == 0, f"{' '.join(command[2:4])} exited with {code}"


def kill_part_way(command: list[str], env: dict, out: Path,
                  delays: tuple[float, ...] = (0.9, 0.5, 0.7, 0.3, 0.6, 0.4)) -> int:
    """Start `command` once per delay and SIGKILL it that long after `out` appears; the kills that landed."""
    import signal
    import subprocess
    import time

    kills = 0
    for delay in delays:
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + CHILD_LIMIT_S
        while not out.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    return kills


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between matching rows of a and b."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """A 2-block random ViT on 32 x 32 inputs (patches of 8) and its image processor, saved."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    ViTModel(config).save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    """Run `featx ARGS...` in this process: (exit code, stdout, stderr) of that run alone."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """`fake_cpu(model, flags)` makes featx read a CPU of that model and flags from /proc/cpuinfo, with no
    ISA cap set; the monkeypatch comes back to set one."""
    from featx import hardware

    def make(model: str, flags: str) -> pytest.MonkeyPatch:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n")
        monkeypatch.setattr(hardware, "CPUINFO", str(cpuinfo))
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        hardware._present_flags.cache_clear()
        return monkeypatch

    yield make
    hardware._present_flags.cache_clear()


@pytest.fixture
def cli(capsys):
    """`run_cli` bound to this test's capsys; returns a Result."""
    def run(*args: str | Path) -> Result:
        return Result(*run_cli(capsys, *args))
    return run


CLASSES = ("airplane", "cat", "ship")  # the classes of cifar_few


@pytest.fixture(scope="session")
def cifar_few(tmp_path_factory) -> Path:
    """4 JPEGs of each of 3 classes, 32 x 32 like CIFAR-10's, as a folder <class>/<file>.jpg; made
    here (each class its own colour, plus noise), so image coverage needs no shared data."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("cifar") / "few"
    rng = np.random.default_rng(0)
    tints = {"airplane": (90, 140, 220), "cat": (170, 120, 80), "ship": (60, 90, 110)}
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.clip(np.array(tints[name]) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name}_{i}.jpg", quality=90)
    return folder


@contextlib.contextmanager
def registries_restored() -> Iterator[None]:
    """Modalities, config sections and backends registered inside are gone after (a test registers
    its own from outside featx without leaking them into the next test)."""
    from featx.backbones.loaders import LOADERS
    from featx.config import SECTIONS
    from featx.modalities import MODALITIES

    saved = [(registry, dict(registry)) for registry in (MODALITIES, SECTIONS, LOADERS)]
    try:
        yield
    finally:
        for registry, before in saved:
            registry.clear()
            registry.update(before)


class InterruptAfter:
    """A runner that runs `inner` for `windows` windows, then stops the run as a Ctrl-C would."""

    def __init__(self, inner, windows: int) -> None:
        self.inner, self.windows, self.calls = inner, windows, 0
        self.device, self.batch_cost = inner.device, inner.batch_cost

    def run(self, featurizer, items, timer=None):
        if self.calls == self.windows:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.run(featurizer, items, timer)
