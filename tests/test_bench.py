"""A small suite end to end with the tiny model: every stage, the schema, resume."""
import json
import os

import jsonschema
import pytest

from featx.bench import load_suite, run_suite, write_report
from featx.errors import FeatxError
from tests.conftest import REPO


@pytest.fixture
def suite_file(tmp_path, tiny_bert_dir, toy_inputs):
    text = f"""
name = "toy_tiny_cpu"
model = "{tiny_bert_dir}"
dtype = "fp32"
seeds = [0, 1]
budget_note = "three steps: a test, not a benchmark"

[data]
train = "{toy_inputs['train']}"
val = "{toy_inputs['dev']}"
test = "{{data}}/dev.csv"

[extract]
max_length = 16
poolings = ["mean", "cls"]

[heads]
specs = ["logreg", "mlp:max_epochs=5"]

[mteb]
k = 2
experiments = 3
seeds = 3

[tfidf]

[hybrid]

[blocks]
cache_layer = 1
specs = ["blocks:lr=0.001"]

[finetune.full]
max_steps = 3
max_length = 16
lr = 1e-3

[finetune.top1]
train_layers = 1
max_steps = 3
max_length = 16
"""
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return path


def test_small_suite_end_to_end_validates_and_resumes(suite_file, toy_inputs, tmp_path):
    suite = load_suite(suite_file, data_dir=toy_inputs["dev"].parent)
    lines = []
    rows = run_suite(suite, tmp_path / "results", echo=lines.append)
    document = write_report(tmp_path / "results", suite.name, rows, "featx bench toy.toml -o results")
    schema = json.loads((REPO / "benchmarks" / "schema" / "results.schema.json").read_text())
    jsonschema.validate(document, schema)

    methods = sorted(r["method"] for r in rows)
    assert methods == ["cached-blocks"] + ["extract"] * 3 + ["extract-states"] * 3 + \
        ["finetune-full", "finetune-partial"] + ["frozen+logreg"] * 2 + \
        ["frozen+mlp"] * 2 + ["hybrid+logreg"] * 2 + ["mteb-fewshot"] * 2 + ["tfidf+logreg"]
    tfidf = next(r for r in rows if r["method"] == "tfidf+logreg")
    assert tfidf["n_runs"] == 2 and 0.5 <= tfidf["accuracy"] <= 1 and tfidf["runs"][0]["vocabulary"] > 0
    hybrid = next(r for r in rows if r["id"] == "hybrid-logreg-mean")
    assert hybrid["n_runs"] == 2 and 0.5 <= hybrid["accuracy"] <= 1 and hybrid["runs"][0]["dim"] == 32
    assert hybrid["runs"][0]["weight"] in (0.25, 0.5, 1.0, 2.0, 4.0) and len(hybrid["runs"][0]["curve"]) == 55
    mteb = next(r for r in rows if r["id"] == "mteb-mean")
    assert mteb["seed_spread"]["seeds"] == 3 and mteb["params"] == {"task": "custom", "k": 2, "experiments": 3}
    logreg = next(r for r in rows if r["id"] == "head-logreg-mean")
    assert logreg["n_runs"] == 2 and logreg["accuracy_std"] is not None and logreg["seeds"] == [0, 1]
    assert all(r["peak_rss_mb"] > 50 for r in rows)
    finetune_s = next(r for r in rows if r["id"] == "finetune-full")["seconds"]["total"]
    extract_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract")
    by_id = {a["id"]: a["seconds_for_k"] for a in document["amortised"]}
    assert by_id["finetune-full"]["100"] == pytest.approx(100 * finetune_s, abs=0.1)
    assert by_id["head-logreg-mean"]["10"] == pytest.approx(extract_s + 10 * logreg["seconds"]["total"], abs=0.1)
    assert by_id["tfidf-logreg"]["10"] == pytest.approx(10 * tfidf["seconds"]["total"], abs=0.1)
    assert by_id["hybrid-logreg-mean"]["10"] == pytest.approx(extract_s + 10 * hybrid["seconds"]["total"], abs=0.1)
    blocks = next(r for r in rows if r["method"] == "cached-blocks")
    assert blocks["n_runs"] == 2 and blocks["params"]["cache_layer"] == 1 and len(blocks["epochs"][0]) == 1
    states_s = sum(r["seconds"]["total"] for r in rows if r["method"] == "extract-states")
    assert next(r for r in rows if r["id"] == "extract-states-train")["states"]["tokens"] > 0
    assert by_id[blocks["id"]]["10"] == pytest.approx(states_s + 10 * blocks["seconds"]["total"], abs=0.1)
    for name in ("results.md", "results.csv"):
        assert (tmp_path / "results" / name).stat().st_size > 0
    assert "| frozen+logreg |" in (tmp_path / "results" / "results.md").read_text()

    again = []
    rerun = run_suite(suite, tmp_path / "results", echo=again.append)
    assert len(rerun) == len(rows) and all(line.endswith("done earlier, kept") for line in again)
    assert [r["finished_at"] for r in rerun] == [r["finished_at"] for r in rows]


def _seen(name):
    """A row's view of the world: one environment variable and the working folder."""
    return {"value": os.environ.get(name), "folder": os.getcwd()}


def test_each_row_runs_under_the_environment_and_folder_of_its_call(tmp_path, monkeypatch):
    """Rows run in processes forked from one server (torch imported once); each still sees the caller's
    environment and working folder as they are when it runs, not as they were when the server started."""
    from featx.bench.runner import _in_child

    monkeypatch.setenv("FEATX_ROW_PROBE", "first")
    first, _ = _in_child(_seen, "FEATX_ROW_PROBE")
    monkeypatch.setenv("FEATX_ROW_PROBE", "second")
    monkeypatch.chdir(tmp_path)
    second, peak_mb = _in_child(_seen, "FEATX_ROW_PROBE")
    assert first["value"] == "first" and second == {"value": "second", "folder": str(tmp_path)}
    assert peak_mb > 0


def test_suite_errors_are_user_errors(tmp_path):
    with pytest.raises(FeatxError, match="does not exist"):
        load_suite(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[data]\ntrain = "a.csv"\n')
    with pytest.raises(FeatxError, match=r"no \[data.test\]"):
        load_suite(bad)
    bad.write_text('name = "x"\n[data]\ntrain = "a.csv"\ntest = "b.csv"\n[anchor]\nmethod = "BERT"\nscore = 0.46\n')
    with pytest.raises(FeatxError, match=r"\[anchor\] needs metric, source"):
        load_suite(bad)


def test_a_suite_without_validation_selects_on_held_out_train_rows(suite_file, toy_inputs, tmp_path):
    text = suite_file.read_text().replace(f'val = "{toy_inputs["dev"]}"\n', "")
    no_val = tmp_path / "no_val.toml"
    no_val.write_text(text)
    suite = load_suite(no_val, data_dir=toy_inputs["dev"].parent)
    assert suite.val is None
    rows = run_suite(suite, tmp_path / "results", echo=lambda line: None,
                     stages=("extract", "heads", "tfidf", "hybrid"))
    assert sorted(r["id"] for r in rows if r["method"] == "extract") == ["extract-test", "extract-train"]
    logreg = next(r for r in rows if r["id"] == "head-logreg-mean")
    tfidf = next(r for r in rows if r["method"] == "tfidf+logreg")
    assert logreg["n_runs"] == 2 and logreg["accuracy"] is not None
    assert tfidf["chosen"][0].endswith("(0.1 of train held out (seed 0))")
    hybrid = next(r for r in rows if r["id"] == "hybrid-logreg-mean")
    assert hybrid["chosen"][0].endswith("(0.1 of train held out (seed 0))")

    # Committed results keep their rows, not their stores: a later stage extracts a missing store again.
    for store in (tmp_path / "results" / "stores").glob("*.h5"):
        store.unlink()
    (tmp_path / "results" / "rows" / "hybrid-logreg-mean.json").unlink()
    lines = []
    again = run_suite(suite, tmp_path / "results", echo=lines.append, stages=("hybrid",))
    assert "extract-train: its store is not here; extracting it again (the row is kept)" in lines
    assert next(r for r in again if r["id"] == "hybrid-logreg-mean")["accuracy"] == hybrid["accuracy"]
    assert [r["finished_at"] for r in again if r["method"] == "extract"] == \
        [r["finished_at"] for r in rows if r["method"] == "extract"]


def test_the_cli_runs_every_stage_by_default():
    from featx.bench.runner import STAGES
    from featx.cli.models import bench

    (stages,) = [p.default for p in bench.params if p.name == "stages"]
    assert stages == ",".join(STAGES)


def test_the_hybrid_refuses_a_store_of_other_texts(tmp_path, tiny_backbone, toy_inputs):
    import featx
    from featx.data import open_input, read_texts
    from featx.train import HeadSpec, train_heads

    wrong = featx.extract(toy_inputs["dev"], tmp_path / "wrong.h5", model=tiny_backbone, dtype="fp32", progress=False)
    texts = {"train": read_texts(open_input(toy_inputs["train"]))}
    with pytest.raises(FeatxError, match=r"does not hold the texts of .* row for row"):
        train_heads(wrong, [HeadSpec("hybrid")], ["mean"], texts=texts)


def test_the_frontier_marks_the_rows_no_other_row_beats_at_each_k(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("frontier", REPO / "benchmarks" / "frontier.py")
    frontier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frontier)

    def row(method, accuracy, total, **extra):
        return {"method": method, "accuracy": accuracy, "seconds": {"total": total}, "pooling": "mean", **extra}
    rows = [row("extract", None, 100.0), row("extract-states", None, 150.0), row("tfidf+logreg", 0.80, 10.0, pooling="-"),
            row("frozen+logreg", 0.78, 5.0, head="logreg"), row("frozen+mlp", 0.79, 6.0, head="mlp", pooling="cls"),
            row("cached-blocks", 0.88, 200.0, head="blocks:k=2"), row("finetune-partial", 0.88, 400.0, variant="top2")]
    (tmp_path / "toy_minilm_cpu").mkdir()
    (tmp_path / "toy_minilm_cpu" / "results.json").write_text(json.dumps({"rows": rows}))
    monkeypatch.setattr(frontier, "RESULTS", tmp_path)
    found = {r["method"]: r for r in frontier.frontier_rows("toy")}
    assert set(found) == {"TF-IDF + logreg", "frozen + logreg", "cached blocks:k=2", "fine-tune top2"}  # cls left out
    cached = found["cached blocks:k=2"]
    assert (cached["once"], cached["k1"], cached["k100"]) == (150.0, 350.0, 20150.0)
    assert found["frozen + logreg"]["k10"] == 150.0 and found["fine-tune top2"]["k1"] == 400.0
    # TF-IDF (0.80) beats the frozen probe (0.78) for fewer seconds at K=1 and 10 (10 s a fit against
    # 100 s once + 5 s a head); at K=100 the probe is the cheapest row. The fine-tune ties the cached
    # head's accuracy for more seconds, so it is never on the frontier.
    assert [k for k in (1, 10, 100) if found["frozen + logreg"][f"pareto{k}"]] == [100]
    assert all(found["TF-IDF + logreg"][f"pareto{k}"] and cached[f"pareto{k}"] for k in (1, 10, 100))
    assert not any(found["fine-tune top2"][f"pareto{k}"] for k in (1, 10, 100))
    assert "| cached blocks:k=2 | MiniLM | 0.8800 | 150 | 200.0 | 350 ● |" in frontier.markdown("toy", list(found.values()))


def test_every_committed_suite_result_matches_the_schema():
    schema = json.loads((REPO / "benchmarks" / "schema" / "results.schema.json").read_text())
    documents = [json.loads(path.read_text()) for path in sorted((REPO / "benchmarks" / "results").glob("*/results.json"))]
    suites = [document for document in documents if "schema_version" in document]  # the others: speed tables
    assert len(suites) >= 14
    for document in suites:
        jsonschema.validate(document, schema)


@pytest.mark.parametrize("task", ["multi", "regression"])
def test_a_suite_of_multi_label_or_regression_rows(tmp_path, tiny_bert_dir, task):
    """Every method of a suite on rows whose colour words are their labels, or whose 'very's are their score;
    the labels read as the suite's [data] says, one file holding the splits (where)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        tags = [c for c in ("red", "blue", "green") if rng.random() < 0.5] or ["red"]
        very = int(rng.integers(0, 4))
        rows.append({"text": " ".join(tags + ["very"] * very + ["thing"] * (4 - very)), "tags": tags,
                     "score": float(very), "split": ("train", "train", "dev", "test")[i % 4]})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    read = 'label_column = "tags"\nmulti_label = ","' if task == "multi" else 'target = "score"'
    (tmp_path / "suite.toml").write_text(f"""
name = "tiny_{task}"
model = "{tiny_bert_dir}"
dtype = "fp32"
[data]
{read}
train = {{path = "{{data}}/rows.jsonl", where = "split=train"}}
val = {{path = "{{data}}/rows.jsonl", where = "split=dev"}}
test = {{path = "{{data}}/rows.jsonl", where = "split=test"}}
[extract]
max_length = 16
[heads]
specs = ["ridge", "mlp:max_epochs=5", "knn"]
[tfidf]
[hybrid]
[blocks]
cache_layer = 1
specs = ["blocks:lr=0.001,epochs=1"]
[finetune.top1]
train_layers = 1
epochs = 1
max_length = 16
lr = 1e-3
[anchor]
method = "a paper's model"
metric = "{'macro_f1' if task == 'multi' else 'mean_pearson'}"
score = 0.5
source = "Someone et al. 2020, Table 1"
""")
    suite = load_suite(tmp_path / "suite.toml", data_dir=tmp_path)
    # Each row runs in a fresh process: regression runs the stages whose rows differ by task (a minute saved).
    stages = ("extract", "heads", "tfidf", "hybrid", "blocks", "finetune") if task == "multi" else \
        ("extract", "heads", "tfidf", "hybrid")  # a regression fine-tune: tests/test_finetune.py
    results = run_suite(suite, tmp_path / "results", echo=lambda line: None, stages=stages)
    document = write_report(tmp_path / "results", suite.name, results, "featx bench suite.toml -o results",
                            suite.anchor)
    jsonschema.validate(document, json.loads((REPO / "benchmarks" / "schema" / "results.schema.json").read_text()))
    assert document["published_anchor"]["score"] == 0.5 and all(r.get("method") != "a paper's model" for r in results)
    scored = [r for r in results if not r["method"].startswith("extract")]
    linear = "ridge" if task == "regression" else "logreg"
    assert sorted(r["method"] for r in scored) == sorted(
        ["frozen+knn", "frozen+mlp", "frozen+ridge", f"hybrid+{linear}", f"tfidf+{linear}"]
        + (["cached-blocks", "finetune-partial"] if task == "multi" else []))
    metric = {"multi": "macro_f1", "regression": "mean_pearson"}[task]
    for row in scored:
        assert row["task"] == task and row["metric"] == metric and row["score"] == row[metric] and row["accuracy"] is None
    assert next(r for r in scored if r["method"] == f"tfidf+{linear}")["score"] > 0.5
    table = (tmp_path / "results" / "results.md").read_text()
    assert ("test micro-F1" in table and "subset accuracy" in table) if task == "multi" else "mean Spearman" in table
    assert "Published anchor, **not measured here**: a paper's model" in table
    if task == "multi":  # every row chose each label's threshold on dev, and says what that gained over 0.5
        assert all(r["val_threshold_gain"] == pytest.approx(r["val_macro_f1"] - r["val_macro_f1_at_0.5"], abs=1e-6)
                   for r in scored) and "dev macro-F1 gain of tuned thresholds over 0.5" in table
    assert all(a["score"] == next(r["score"] for r in results if r["id"] == a["id"]) for a in document["amortised"])


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports(script):
    """Each committed benchmark command at least loads: its imports from featx and from the scripts beside it
    still exist. hybrid_levers.py imported a helper from bench_hybrid.py that a later commit removed, so the
    command its README section gives failed at once, unnoticed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{script[:-3]}", REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # raises on a missing import; the work itself is under `__main__`
