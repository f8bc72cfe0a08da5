"""The machine's matrix-multiply ceiling for MiniLM's linear layers, and the model FLOPs an extraction executes.

- `ceilings()`: GFLOP/s of the six linear layers of one MiniLM block (query, key, value, output
  384 x 384; feed-forward 384 -> 1536 -> 384) applied to `tokens` rows at once, as a batch of featx's
  default CPU budget gives them: torch fp32, torch bf16 (weights and inputs bf16, as autocast runs
  them), and OpenVINO f32 and bf16 (a compiled model of the same six MatMuls) where it is installed.
  Each is the median of `repeats` timings of `loops` passes, after a warm-up, on torch's default
  threads (all cores). The machine's ceiling for a precision is the faster of the two backends
  (`machine_ceilings`): a row is measured against what the silicon gave either library.
- `executed_flops()`: the FLOPs a featx run of those texts executes, padding included: windows of
  `window_rows`, batches planned as featx plans them (featx.extraction.batching.plan_batches, sorted,
  cut by the token budget), each batch padded to its longest row; dense layers and attention (QK^T, AV).
- `useful_flops()`: the same without padding (each row at its own length).

    python benchmarks/gemm_ceiling.py            # prints the ceilings of this machine as JSON
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np

LAYERS, HIDDEN, FFN = 6, 384, 1536
SHAPES = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, FFN), (FFN, HIDDEN)]  # (in, out) of one block's linears


def _block_flops(tokens: int) -> float:
    return 2.0 * tokens * sum(k * n for k, n in SHAPES)


def torch_ceiling(tokens: int, dtype: str, loops: int = 20, repeats: int = 5) -> float:
    """GFLOP/s of one block's linears on `tokens` rows in torch (fp32 or bf16)."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    generator = torch.Generator().manual_seed(0)
    x = {k: torch.randn(tokens, k, generator=generator).to(kind) for k in {k for k, _ in SHAPES}}
    weights = [torch.randn(n, k, generator=generator).to(kind) for k, n in SHAPES]
    with torch.inference_mode():
        def once() -> None:
            for (k, _), w in zip(SHAPES, weights):
                torch.nn.functional.linear(x[k], w)

        for _ in range(3):
            once()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(loops):
                once()
            times.append(time.perf_counter() - t0)
    return _block_flops(tokens) * loops / statistics.median(times) / 1e9


def openvino_ceiling(tokens: int, precision: str, loops: int = 20, repeats: int = 5) -> float | None:
    """GFLOP/s of the same linears compiled by OpenVINO for the CPU (precision "f32" or "bf16"), None
    where OpenVINO is not installed."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    inputs, outputs = [], []
    for k, n in SHAPES:
        parameter = ops.parameter([tokens, k], ov.Type.f32)
        weight = ops.constant(rng.standard_normal((n, k)).astype(np.float32))
        inputs.append(parameter)
        outputs.append(ops.matmul(parameter, weight, transpose_a=False, transpose_b=True))
    model = ov.Model(outputs, inputs, "minilm_block_linears")
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                       "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    feed = {i: rng.standard_normal((tokens, k)).astype(np.float32) for i, (k, _) in enumerate(SHAPES)}
    for _ in range(3):
        request.infer(feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            request.infer(feed)
        times.append(time.perf_counter() - t0)
    return _block_flops(tokens) * loops / statistics.median(times) / 1e9


def ceilings(tokens: int = 2048) -> dict[str, float | None]:
    """Every ceiling this machine can measure, GFLOP/s, keyed torch_fp32, torch_bf16, openvino_f32,
    openvino_bf16."""
    return {"tokens": tokens, "torch_fp32": round(torch_ceiling(tokens, "fp32"), 1),
            "torch_bf16": round(torch_ceiling(tokens, "bf16"), 1),
            **{f"openvino_{p}": None if (g := openvino_ceiling(tokens, p)) is None else round(g, 1)
               for p in ("f32", "bf16")}}


def _row_flops(width: int) -> float:
    """Forward FLOPs of one row of `width` tokens (dense layers, then QK^T and AV over `width`)."""
    return width * (2.0 * LAYERS * sum(k * n for k, n in SHAPES) + 2.0 * LAYERS * 2 * width * HIDDEN)


def executed_flops(lengths: np.ndarray, window_rows: int, batch_tokens: int) -> float:
    """FLOPs featx executes on rows of these token lengths, each batch padded to its longest row."""
    from featx.extraction.batching import plan_batches

    total = 0.0
    for start in range(0, len(lengths), window_rows):
        window = np.asarray(lengths[start:start + window_rows])
        for rows in plan_batches(window, batch_tokens):
            total += len(rows) * _row_flops(int(window[rows].max()))
    return total


def useful_flops(lengths: np.ndarray) -> float:
    """The same FLOPs with no padding: every row at its own length."""
    return float(sum(_row_flops(int(n)) for n in lengths))


def precision_of(dtype: str) -> str | None:
    """The compute precision of a benchmark row's dtype ("bf16, openvino", "fp32, torch", "fp32"), None
    when it does not say ("OpenVINO default")."""
    first = dtype.split(",")[0].strip()
    return first if first in ("bf16", "fp32") else None


def machine_ceilings(measured: dict[str, float | None]) -> dict[str, float]:
    """The machine's ceiling per precision: the faster of torch's and OpenVINO's GEMMs."""
    pairs = {"bf16": ("torch_bf16", "openvino_bf16"), "fp32": ("torch_fp32", "openvino_f32")}
    return {p: max(v for k in keys if (v := measured.get(k)) is not None) for p, keys in pairs.items()}


if __name__ == "__main__":
    print(json.dumps(ceilings(), indent=2))
