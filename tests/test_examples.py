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


def test_one_cache_three_tasks_walkthrough_runs(tmp_path, data_dir):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "one_cache_three_tasks.py"), "--rows", "240",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "FEATX_DATA": str(data_dir)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = dict(re.findall(r"^(sentiment|rating|emotions) +\w+ +(?:test|dev) \S+ ([01]\.\d{4})", done.stdout, re.M))
    assert set(found) == {"sentiment", "rating", "emotions"}, done.stdout
    assert float(found["sentiment"]) > 0.55 and float(found["rating"]) > 0.2 and float(found["emotions"]) > 0.1
    assert re.search(r"^sentiment: \{.*'(positive|negative)'", done.stdout, re.M)
    assert re.search(r"^sentiment   200 logreg heads in [\d.]+ s, best on validation C=\S+ \(given\): val accuracy 0\.\d{4}$",
                     done.stdout, re.M), done.stdout
    assert re.search(r"^emotions: \{'Thank you so much, this made my day!': \[", done.stdout, re.M)
    assert sorted(p.name for p in (tmp_path / "out" / "predictors").iterdir()) == ["emotions", "rating", "sentiment"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # it wrote under -o only
