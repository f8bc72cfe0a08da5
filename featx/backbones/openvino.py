"""A text backbone, or an image model given as a torch module, run by OpenVINO instead of torch
(``featx extract --backend openvino``; the ``featx[openvino]`` extra).

The loaded torch module is converted in-process (``openvino.convert_model`` traces it on a
small example; the inputs keep dynamic batch and length), so every model featx loads with
transformers can run this way without an export step. The converted model holds fp32
weights; the precision it runs in is a compile-time setting taken from the config's dtype:
fp32 compiles with ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO's CPU plugin would otherwise
pick bf16 on a CPU that has it), bf16 with ``bf16``.

The conversion takes a few seconds, so its result is kept in featx's own cache folder
(``$FEATX_CACHE/openvino/<key>/``, never beside the user's output), keyed by the weights'
sha256, the tokenizer's and the hidden states asked for (texts) or the preprocessing (images),
and the OpenVINO version; it is written
under a temporary name and renamed, so a kill leaves no half model that a later run reads, and
sealed with the sha256 of its files, checked before every read (featx.caches): a damaged entry is
converted again, with one warning line.

Compiling takes about a second; a process keeps its last few compiled models, so extracting
train, val and test in one process compiles once. The text encoder is called like the torch
model's forward for what the text featurizer needs:
`(input_ids, attention_mask)` -> the hidden states of `layers`, concatenated, as a torch
tensor; the image encoder maps normalised pixels to the module's output (its feature map).
The runners' worker threads call them at once; each thread has its own infer request, and
the compiled model has one stream per worker. A process's first inference runs alone: in
OpenVINO's Python binding (2026.4), threads making the first inference of a process at once can
deadlock. Setting an input tensor's ``data`` initialises a static inside the binding, which
lets the GIL go while it runs. A second thread then takes the GIL and waits on that static, and
the first waits for the GIL. This hung `featx extract` with two workers; one CI run stalled
past its limit that way.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featx.backbones.hashing import module_structure_sha256
from featx.caches import cache_folder, folder_intact, report_rejected, seal_folder
from featx.errors import FeatxError, first_line
from featx.hardware import cpu_workers
from featx.progress import status

_PRECISION = {"fp32": "f32", "bf16": "bf16"}
_TYPE_NAMES = {"f32": "float32", "bf16": "bfloat16"}  # how OpenVINO's Type prints each
_FORMAT = "2"  # bump when what the cached model holds changes (2: sealed with featx.caches' checks)
# Compiled models of this process, by what they compute and how (oldest dropped first).
_COMPILED: dict[tuple[Any, ...], Any] = {}
_COMPILED_KEPT = 4
_COMPILED_LOCK = threading.Lock()
# The first inference of the process runs alone (see the module docstring); the others need not.
_FIRST_INFERENCE = threading.Lock()
_FIRST_INFERENCE_DONE = threading.Event()


def require_openvino() -> Any:
    """The openvino module (its usage telemetry declined), or one clear line saying how to install it."""
    _decline_telemetry()
    try:
        import openvino
    except ImportError:
        raise FeatxError("--backend openvino needs OpenVINO: pip install 'featx[openvino]'") from None
    return openvino


def _decline_telemetry() -> None:
    """Decline OpenVINO's usage telemetry for this process, before openvino is first imported.

    Importing openvino (its converter) otherwise sends usage events to a third party unless a
    consent file under ~/intel says no, and writes a client id there: a network call and a
    write outside anything the user named. It also sends from a forked process (to time out
    a request that can hang offline), and forking a process whose threads hold locks can
    hang it; a featx run that had already used torch's threads did hang so, once.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # an OpenVINO without the telemetry package sends nothing
        return
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


class _HiddenStates(torch.nn.Module):
    """What is converted: the model's hidden states at `layers` (-1: the last), concatenated."""

    def __init__(self, model: torch.nn.Module, layers: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.layers == (-1,):
            last: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return last
        states = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        return torch.cat([states[i] for i in self.layers], dim=-1)


class _FeatureMap(torch.nn.Module):
    """What is converted for an image model given as a torch module: its output (a feature map,
    or vectors) for normalised pixels (B, 3, H, W)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(pixels)
        return out


class CompiledModel:
    """A model compiled by OpenVINO for the CPU in `dtype`'s precision, called from many threads:
    each has its own infer request, the compiled model one stream per worker (see the module
    docstring). `convert()` gives the OpenVINO model when this process has not compiled `key`."""

    def __init__(self, key: tuple[Any, ...], convert: Callable[[Any], Any], dtype: str,
                 workers: int | None = None) -> None:
        ov = require_openvino()
        workers = cpu_workers()[0] if workers is None else workers  # one stream for each of the runner's workers
        if dtype not in _PRECISION:
            raise FeatxError(f"--backend openvino runs in fp32 or bf16, not {dtype}")
        self.precision = _PRECISION[dtype]
        config = {"INFERENCE_PRECISION_HINT": self.precision, "NUM_STREAMS": str(workers),
                  "INFERENCE_NUM_THREADS": str(torch.get_num_threads())}
        key = (*key, tuple(sorted(config.items())))
        with _COMPILED_LOCK:
            if key not in _COMPILED:  # one compile per process: train, val and test reuse it
                _COMPILED[key] = ov.Core().compile_model(convert(ov), "CPU", config)
                while len(_COMPILED) > _COMPILED_KEPT:
                    _COMPILED.pop(next(iter(_COMPILED)))
            self._compiled = _COMPILED[key]
        ran = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        if _TYPE_NAMES[self.precision] not in ran:  # e.g. bf16 on a CPU without it
            raise FeatxError(f"OpenVINO compiled the model in {ran}, not the {dtype} asked for: use --dtype fp32")
        self._local = threading.local()

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        arrays = {name: value.numpy() for name, value in inputs.items()}
        if _FIRST_INFERENCE_DONE.is_set():
            return _infer(request, arrays)
        with _FIRST_INFERENCE:
            found = _infer(request, arrays)
            _FIRST_INFERENCE_DONE.set()
        return found


def _release_compiled() -> None:
    """Drop this process's compiled models while the interpreter is still whole (atexit). Left to
    the end of exit(), their thread pools were torn down among C++ static destructors, and a
    failed `featx extract` (a full disk) once ended in 'terminate called without an active
    exception' (SIGABRT) after its one-line error, in 1 of 4 full test runs."""
    with _COMPILED_LOCK:
        _COMPILED.clear()


atexit.register(_release_compiled)


def _check_on_cpu(backbone: Any) -> None:
    if backbone.device.type != "cpu":
        raise FeatxError(f"--backend openvino runs on the CPU; {backbone.name} is loaded on {backbone.device}: "
                         "use --device cpu")


class CompiledTextModel(CompiledModel):
    """A text backbone's hidden states at `layers`, concatenated, computed by OpenVINO."""

    def __init__(self, backbone: Any, layers: tuple[int, ...], dtype: str, workers: int | None = None) -> None:
        _check_on_cpu(backbone)
        super().__init__((backbone.weights_sha256, backbone.tokenizer_sha256, layers),
                         lambda ov: converted_text_model(ov, backbone, layers), dtype, workers)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().__call__(input_ids=input_ids, attention_mask=attention_mask)


def converted_text_model(ov: Any, backbone: Any, layers: tuple[int, ...]) -> Any:
    """The fp32 OpenVINO model of the text backbone's hidden states at `layers` (featx's cache, else converted)."""
    example = {"input_ids": torch.ones((2, 8), dtype=torch.int64),
               "attention_mask": torch.ones((2, 8), dtype=torch.int64)}
    parts = [backbone.tokenizer_sha256[:16], "_".join(str(i) for i in layers).replace("-", "m")]
    return _converted(ov, backbone, _HiddenStates(backbone.model, layers), example, parts)


class CompiledImageModel(CompiledModel):
    """An image model given as a torch module (featx preprocesses its pixels), computed by
    OpenVINO: normalised pixels (B, 3, crop, crop) in, the module's output out.

    A module's weights hash is of its state dict, which does not hold what has no weights (a
    convolution's stride, an activation): the converted and compiled models are also keyed by
    the module's printed structure, so two modules sharing weights never share a model."""

    def __init__(self, backbone: Any, dtype: str, workers: int | None = None) -> None:
        _check_on_cpu(backbone)
        crop = backbone.preprocess.crop
        preprocess = hashlib.sha256(backbone.preprocess_json.encode()).hexdigest()
        structure = module_structure_sha256(backbone.model)

        def convert(ov: Any) -> Any:
            example = {"pixels": torch.zeros((2, 3, crop, crop))}
            return _converted(ov, backbone, _FeatureMap(backbone.model), example,
                              [preprocess[:16], structure[:16], "image"])

        super().__init__((backbone.weights_sha256, preprocess, structure), convert, dtype, workers)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().__call__(pixels=pixels.float().contiguous())


def _infer(request: Any, inputs: dict[str, np.ndarray]) -> torch.Tensor:
    request.infer(inputs)
    return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))


def _converted(ov: Any, backbone: Any, module: torch.nn.Module, example: dict[str, torch.Tensor],
               parts: list[str]) -> Any:
    """The OpenVINO model of `module` (what `backbone` computes), from featx's cache, else
    converted (traced on `example`) and cached; the cache key is the weights' sha256 and `parts`."""
    key = "-".join([backbone.weights_sha256[:16], *parts, ov.__version__.split("-")[0], _FORMAT])
    folder = cache_folder() / "openvino" / key
    if folder.exists():
        # Checked before OpenVINO reads it: a model.bin changed in place reads fine and gives wrong
        # vectors, and a garbage model.xml makes OpenVINO's other front ends print to stderr.
        if folder_intact(folder):
            try:
                return ov.Core().read_model(folder / "model.xml")
            except RuntimeError:
                pass
        report_rejected(f"the converted model {key}", folder.parent, "it was converted again and replaced",
                        kind="converted_models")
        shutil.rmtree(folder, ignore_errors=True)
    status(f"converting {backbone.name} for OpenVINO, once (kept in {folder.parent})")
    # Tracing warns about transformers' Python-level checks on shapes (padding, causality); for an
    # encoder they hold for every shape, and the tests compare the result with torch's at many.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit._trace.TracerWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        try:
            model = ov.convert_model(module.eval(), example_input=example)
        except Exception as e:  # the converter raises its own types, and torch's from tracing
            raise FeatxError(f"OpenVINO could not convert {backbone.name} ({first_line(e)[:200]}): use --backend torch") \
                from None
    _save(ov, model, folder)
    return model


def _save(ov: Any, model: Any, folder: Path) -> None:
    """Write the model (fp32 weights: no fp16 compression) whole or not at all. The cache is an
    optimisation: a read-only or full disk, or another process saving the same model first,
    costs a conversion next time, nothing else."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    except OSError:
        return
    try:
        ov.save_model(model, scratch / "model.xml", compress_to_fp16=False)
        seal_folder(scratch)
        os.replace(scratch, folder)
    except (OSError, RuntimeError):
        shutil.rmtree(scratch, ignore_errors=True)

