"""What one pass of IMDB's hybrid sweep costs, kernel by kernel, and the kernels that might replace
scipy's (issue 34: the sweep's fits are ~1,500 such products, two thirds of them the TF-IDF's).

On the hybrid head's own training design for IMDB (compact_accuracy.py's stores in --work, mean
pooling, its TF-IDF from featx.heads.tfidf: 22,500 rows, ~404k terms, ~6.9M stored entries, float32;
the dense block 22,500 x 384 float32), each product timed on ONE thread (torch and BLAS limited to
one) unless the row says two; the median of --repeats calls after one warm-up, interleaved rounds:

- the head's kernels: scipy CSR `X v` (a gather and a sum a row) and `X^T r` (CSR of the transpose),
  and the dense block's `D v` and `D^T r` (OpenBLAS);
- the same sparse products in other layouts: columns renumbered by document frequency (frequent terms'
  entries of v together), the scatter forms (CSC: `X.T @ r` on X's rows, `X v` on the transpose's);
- a diagnostic: `X v` with every column index taken modulo 1,024 (v's reads always in L1): what v's
  reads cost;
- a Hessian product `X^T (c * (X v))` in one pass over row blocks of 1,000 rows (each block's
  transpose product made while the block is in cache), by scipy's public `r @ X_block`;
- torch's CSR (MKL) with int32 and int64 indices, for 1, 2 and 5 columns at once (5 weights' paths
  sharing one pass), on one thread and on two.

    python benchmarks/sparse_products.py --work /tmp/featx-compact

writes benchmarks/results/sparse_products/results.{json,md}.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_hybrid import load_split
from compact_accuracy import machine_report, run_line, stores, suite_parser, write_report


def as_torch(matrix: Any, index: Any) -> Any:
    """torch's CSR of `matrix`, its column indices sorted in each row (MKL's products assume them sorted:
    unsorted, they came out wrong on this matrix)."""
    import torch

    matrix = matrix.copy()
    matrix.sort_indices()
    return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(index)),
                                   torch.from_numpy(matrix.indices.astype(index)), torch.from_numpy(matrix.data),
                                   size=matrix.shape)


def kernels(X: Any, D: np.ndarray) -> dict[str, tuple[int, Any]]:
    """Each candidate: (torch threads, a call)."""
    import torch

    rng = np.random.default_rng(0)
    n, d = X.shape
    XT = X.T.tocsr()
    v, r, c = (rng.standard_normal(size).astype(np.float32) for size in (d, n, n))
    vd = rng.standard_normal(D.shape[1]).astype(np.float32)
    by_df = np.argsort(-np.diff(X.tocsc().indptr), kind="stable")
    X_df, v_df = X[:, by_df].tocsr(), np.ascontiguousarray(v[by_df])
    X_df.sort_indices()
    X_l1 = X.copy()
    X_l1.indices = (X_l1.indices % 1024).astype(np.int32)
    blocks = [X[low:low + 1000] for low in range(0, n, 1000)]

    def hessian_blocked() -> np.ndarray:
        found, low = np.zeros(d, np.float32), 0
        for block in blocks:
            high = low + block.shape[0]
            found += (c[low:high] * (block @ v)) @ block
            low = high
        return found

    found: dict[str, tuple[int, Any]] = {
        "X v, scipy CSR (the head's)": (1, lambda: X @ v),
        "X^T r, scipy CSR of the transpose (the head's)": (1, lambda: XT @ r),
        "D v, OpenBLAS": (1, lambda: D @ vd), "D^T r, OpenBLAS": (1, lambda: D.T @ r),
        "X v, columns by document frequency": (1, lambda: X_df @ v_df),
        "X v, scatter (CSC of the transpose)": (1, lambda: XT.T @ v),
        "X^T r, scatter (CSC: X's rows)": (1, lambda: X.T @ r),
        "X v, column indices mod 1,024 (diagnostic)": (1, lambda: X_l1 @ v),
        "X^T (c * X v), two passes": (1, lambda: XT @ (c * (X @ v))),
        "X^T (c * X v), one pass in 1,000-row blocks": (1, hessian_blocked),
    }
    for index in (np.int32, np.int64):
        T, TT = as_torch(X, index), as_torch(XT, index)
        for k in (1, 2, 5):
            V, R = torch.from_numpy(rng.standard_normal((d, k)).astype(np.float32)), \
                torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
            for threads in (1, 2):
                bits = np.dtype(index).itemsize * 8
                found[f"X V, torch CSR int{bits}, {k} column(s), {threads} thread(s)"] = \
                    (threads, lambda T=T, V=V: T @ V)
                found[f"X^T R, torch CSR int{bits}, {k} column(s), {threads} thread(s)"] = \
                    (threads, lambda TT=TT, R=R: TT @ R)
    return found


def timings(candidates: dict[str, tuple[int, Any]], repeats: int, rounds: int) -> dict[str, dict[str, float]]:
    """Milliseconds a call: each round times every candidate once in turn (--repeats calls, the median)."""
    import torch
    from threadpoolctl import threadpool_limits

    seen: dict[str, list[float]] = {name: [] for name in candidates}
    with threadpool_limits(1, user_api="blas"):
        for _ in range(rounds):
            for name, (threads, call) in candidates.items():
                torch.set_num_threads(threads)
                call()
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - started)
                seen[name].append(statistics.median(times) * 1000)
    return {name: {"ms": statistics.median(ms), "rounds": ms} for name, ms in seen.items()}


def markdown(report: dict[str, Any]) -> str:
    shape = report["design"]
    lines = ["# One pass of IMDB's hybrid sweep, kernel by kernel\n",
             run_line(report, f"TF-IDF {shape['rows']:,} x {shape['terms']:,}, {shape['entries']:,} entries, "
                              f"dense {shape['rows']:,} x {shape['dense']}, float32; median of "
                              f"{report['repeats']} calls, median of {report['rounds']} interleaved rounds"),
             "| product | ms | per stored entry (ns) |", "|---|---|---|"]
    for name, found in report["results"].items():
        per_entry = f"{found['ms'] * 1e6 / shape['entries']:.2f}" if not name.startswith("D") else ""
        lines.append(f"| {name} | {found['ms']:.2f} | {per_entry} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import scipy.sparse

    from featx.bench.suite import load_suite
    from featx.heads.hybrid import HybridHead, TextVectors, _fitted_parts

    parser = suite_parser(__doc__, "sparse_products", suites="imdb")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load, started = os.getloadavg(), time.perf_counter()
    suite = load_suite(HERE / "suites" / "imdb_minilm_cpu.toml", args.data)
    texts, vectors, _ = load_split(suite, "train", stores("imdb", args.work, args.data)["train"])
    X = TextVectors(texts, vectors)
    tfidf, scaler = _fitted_parts(X)
    sparse, dense = HybridHead._design(X, tfidf.rows_of(texts), scaler, 1.0)
    sparse = scipy.sparse.csr_matrix(sparse, dtype=np.float32)
    dense = np.ascontiguousarray(dense, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: sparse CSR support is in beta
        results = timings(kernels(sparse, dense), args.repeats, args.rounds)
    report = machine_report("sparse_products.py", load, started, results=results, repeats=args.repeats,
                            rounds=args.rounds, dtype="float32 products",
                            design={"rows": sparse.shape[0], "terms": sparse.shape[1], "entries": int(sparse.nnz),
                                    "dense": dense.shape[1], "indices sorted": bool(sparse.has_sorted_indices)})
    write_report(args.out, report, markdown)


if __name__ == "__main__":
    main()
