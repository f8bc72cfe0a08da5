"""The walkthroughs in examples/ run as a user runs them, and print what they promise."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_beat_tfidf_walkthrough_runs_and_compares_four_methods(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "beat_tfidf.py"), "--train-rows", "1500",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(re.findall(r"^\| (TF-IDF \+ logreg|frozen MiniLM \+ logreg|hybrid \(.*\)|cached top 2 blocks) \| "
                           r"(0\.\d{4}) \|", done.stdout, flags=re.M))
    assert len(rows) == 4, done.stdout
    assert all(0.6 < float(accuracy) <= 1 for accuracy in rows.values()), rows
    assert (tmp_path / "out" / "predictor" / "predictor.json").is_file()
    assert "'a gorgeous, witty and moving film': 'positive', 'a tedious, clumsy mess': 'negative'" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # it wrote under -o only
