"""Why IMDB's hybrid head stays above 3x a logreg head (issue 34): the levers tried, measured.

On the IMDB MiniLM stores (compact_accuracy.py's `stores`, in --work), mean pooling, the hybrid's
TF-IDF (featx.heads.tfidf) and its dense block at weight 1, in one process, 2 threads:

- scipy's L-BFGS-B at this width: one fit (C = 1, from zero): seconds in the objective against the
  whole fit, and the evaluations;
- the parts of one evaluation: the TF-IDF block times a vector and its transpose times a vector
  (scipy, float32 CSR), and the same products for 5 vectors at once (torch CSR), as five weights'
  paths in lockstep would share them;
- the weight-1 C path (the head's 11 Cs upwards, warm-started) with scipy's L-BFGS-B, as the head
  runs it, and with scikit-learn's Newton-CG (the same max-gradient tolerance, 1e-4): passes over
  the matrix and seconds;
- weights 0.5 and 2 along the same Cs, warm-started from their own last C (as the head runs them)
  and from weight 1's fit at the same C (its dense coefficients rescaled): evaluations;
- identical TF-IDF columns (which an exact reformulation could merge): columns and stored entries.

    python benchmarks/hybrid_levers.py --work /tmp/featx-compact

writes benchmarks/results/hybrid_levers/results.{json,md}.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_hybrid import load_split
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report


def timed(f: Any, repeats: int = 20) -> float:
    """Milliseconds a call, the mean of `repeats` after one warm-up."""
    f()
    started = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - started) / repeats * 1000


def counting_minimize(log: list[dict[str, float]]) -> Any:
    """scipy's minimize as featx.heads.logistic_columns calls it, logging evaluations and seconds."""
    from scipy.optimize import minimize

    def run(fun: Any, x0: np.ndarray, **options: Any) -> Any:
        inside = [0.0]

        def objective(x: np.ndarray) -> Any:
            t0 = time.perf_counter()
            found = fun(x)
            inside[0] += time.perf_counter() - t0
            return found
        t0 = time.perf_counter()
        result = minimize(objective, x0, **options)
        log.append({"evaluations": int(result.nfev), "seconds": time.perf_counter() - t0, "objective_s": inside[0]})
        return result
    return run


def product_parts(columns: Any) -> dict[str, float]:
    import scipy.sparse
    import torch

    sparse = scipy.sparse.vstack(columns.blocks[0].rows).tocsr()
    transposed = sparse.T.tocsr()
    v, r = np.ones(sparse.shape[1], np.float32), np.ones(sparse.shape[0], np.float32)

    def as_torch(m: Any) -> Any:
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                       torch.from_numpy(m.indices.astype(np.int64)), torch.from_numpy(m.data),
                                       size=m.shape)
    T, TT = as_torch(sparse), as_torch(transposed)
    V, R = torch.ones(sparse.shape[1], 5), torch.ones(sparse.shape[0], 5)
    return {"X v ms (scipy)": timed(lambda: sparse @ v), "X^T r ms (scipy)": timed(lambda: transposed @ r),
            "X V5 ms (torch)": timed(lambda: T @ V), "X^T R5 ms (torch)": timed(lambda: TT @ R)}


def paths(columns: Any, y: np.ndarray, Cs: list[float], log: list[dict[str, float]]) -> dict[str, Any]:
    from featx.heads.logistic_columns import fit_softmax

    def walk(weight: float, starts: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[int], float]:
        rows, W, found, evaluations = columns.scaled(1, weight), None, [], []
        t0 = time.perf_counter()
        for i, C in enumerate(Cs):
            log.clear()
            W = fit_softmax(rows, y, 2, C, W if starts is None else starts[i], 1000)
            found.append(W)
            evaluations.append(log[0]["evaluations"])
        return found, evaluations, time.perf_counter() - t0

    middle, own, seconds = walk(1.0)
    result: dict[str, Any] = {"weight 1, own path": {"evaluations": own, "seconds": seconds}}
    dense = columns.width - columns.blocks[1].shape[1]
    for weight in (0.5, 2.0):
        rescaled = []
        for W in middle:
            start = W.copy()
            start[dense:-1] /= weight
            rescaled.append(start)
        result[f"weight {weight:g}, own path"] = dict(zip(("evaluations", "seconds"), walk(weight)[1:]))
        result[f"weight {weight:g}, from weight 1"] = dict(zip(("evaluations", "seconds"), walk(weight, rescaled)[1:]))
    return result


def newton_path(columns: Any, y: np.ndarray, Cs: list[float]) -> dict[str, Any]:
    """scikit-learn's Newton-CG along the same path: its objective, gradient and Hessian products on
    the two blocks; passes = objective or gradient evaluations + Hessian-vector products."""
    from scipy.special import expit
    from sklearn.utils.optimize import _newton_cg

    n, d = columns.n_rows, columns.width
    target, passes = (y == 1).astype(np.float64), [0]

    def scores(w: np.ndarray) -> np.ndarray:
        passes[0] += 1
        return columns.scores(w[:, None])[:, 0].astype(np.float64)  # type: ignore[no-any-return]

    def gradient(w: np.ndarray, z: np.ndarray, penalty: float) -> np.ndarray:
        found = columns.gradient(((expit(z) - target) / n)[:, None].astype(np.float32))[:, 0]
        found[:d] += penalty * w[:d]
        return found  # type: ignore[no-any-return]

    w, t0, per_C = np.zeros(d + 1), time.perf_counter(), []
    for C in Cs:
        penalty, before = 1.0 / (C * n), passes[0]

        def loss(w: np.ndarray, penalty: float = penalty) -> float:
            z = scores(w)
            return float((np.logaddexp(0, z) - target * z).mean() + 0.5 * penalty * (w[:d] ** 2).sum())

        def grad_hess(w: np.ndarray, penalty: float = penalty) -> tuple[np.ndarray, Any]:
            z = scores(w)
            curvature = (expit(z) * (1 - expit(z)) / n).astype(np.float32)

            def hessian_times(v: np.ndarray, penalty: float = penalty) -> np.ndarray:
                u = scores(np.concatenate([v[:d], [0.0]])) + v[d]
                found = columns.gradient((curvature * u)[:, None].astype(np.float32))[:, 0]
                found[:d] += penalty * v[:d]
                return found  # type: ignore[no-any-return]
            return gradient(w, z, penalty), hessian_times

        w = _newton_cg(grad_hess, loss, lambda w, penalty=penalty: gradient(w, scores(w), penalty), w, tol=1e-4,
                       maxiter=100)[0]
        per_C.append(passes[0] - before)
    return {"passes": per_C, "seconds": time.perf_counter() - t0}


def identical_columns(matrix: Any) -> dict[str, int]:
    transposed = matrix.T.tocsr()
    transposed.sort_indices()
    seen: dict[tuple[bytes, bytes], int] = {}
    for i in range(transposed.shape[0]):
        span = slice(transposed.indptr[i], transposed.indptr[i + 1])
        key = (transposed.indices[span].tobytes(), transposed.data[span].astype(np.float32).tobytes())
        seen.setdefault(key, len(key[0]) // 4)
    return {"columns": int(matrix.shape[1]), "distinct columns": len(seen), "entries": int(matrix.nnz),
            "entries after merging": int(sum(seen.values()))}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# The hybrid head on IMDB: levers measured\n", run_line(report, "weight 1 unless said; seed 0"), ""]
    for name, value in report["results"].items():
        lines.append(f"- **{name}**: {_rounded(value)}")
    return "\n".join(lines) + "\n"


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 2) if isinstance(value, float) else value


def main() -> None:
    import featx.heads.logistic_columns as logistic_columns
    from featx.bench.suite import load_suite
    from featx.heads.hybrid import HybridHead, TextVectors, _fitted_parts
    from featx.heads.logistic_columns import Columns, fit_softmax

    args = suite_parser(__doc__, "hybrid_levers", suites="imdb").parse_args()
    load, started = os.getloadavg(), time.perf_counter()
    suite = load_suite(HERE / "suites" / "imdb_minilm_cpu.toml", args.data)
    texts, vectors, labels = load_split(suite, "train", stores("imdb", args.work, args.data)["train"])
    head, X = HybridHead(), TextVectors(texts, vectors)
    head.classes_ = np.unique(labels)
    tfidf, scaler = _fitted_parts(X)
    columns = Columns(head._design(X, tfidf.rows_of(texts), scaler, 1.0), threads=2)
    y, Cs = np.searchsorted(head.classes_, labels), sorted(head.Cs)
    log: list[dict[str, float]] = []
    logistic_columns.minimize = counting_minimize(log)
    fit_softmax(columns, y, 2, 1.0, None, 1000)
    results = {"one L-BFGS-B fit, C 1, from zero": dict(log[0]), "products": product_parts(columns),
               "C paths (L-BFGS-B)": paths(columns, y, Cs, log), "weight 1's C path (Newton-CG)": newton_path(columns, y, Cs),
               "identical TF-IDF columns": identical_columns(tfidf.rows_of(texts))}
    report = machine_report("hybrid_levers.py", load, started, results=results,
                            dtype="TF-IDF float32 products; solver state float64")
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
