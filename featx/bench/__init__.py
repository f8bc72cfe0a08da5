"""The speed-versus-accuracy benchmark: suites, the resumable runner, the report."""
from featx.bench.report import write_report
from featx.bench.runner import load_rows, run_suite
from featx.bench.suite import Suite, load_suite

__all__ = ["Suite", "load_rows", "load_suite", "run_suite", "write_report"]
