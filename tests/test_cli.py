"""The command line as a user meets it: help, errors as one line with exit 2, a real kill."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import featx
from tests.conftest import run_cli, run_to_end, write_lines


def test_help_shows_examples(capsys):
    for args in (["--help"], ["extract", "--help"]):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and "Examples:" in out and "featx extract sst2:dev" in out


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(d / "missing.tsv")], "does not exist"),
    (lambda d: [str(write_lines(d / "x.tsv", ["label\tcontent", "0\tok"])), "--text-column", "sentence"],
     "text column 'sentence' is not in"),
    (lambda d: [str(write_lines(d / "empty.jsonl", []))], "has no rows"),
    (lambda d: ["sst2:nope"], "does not exist (bundled datasets: sst2:train"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path, make_args, message):
    code, _, err = run_cli(capsys, "extract", *make_args(tmp_path), "-o", str(tmp_path / "s.h5"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("featx: error: ") and message in err


def test_fingerprint_mismatch_is_one_line_and_exit_2(capsys, tmp_path, tiny_bert_dir):
    path = write_lines(tmp_path / "x.txt", ["one", "two", "three"])
    common = ["extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir), "-q"]
    assert run_cli(capsys, *common)[0] == 0
    code, _, err = run_cli(capsys, *common, "--pooling", "cls")
    assert code == 2 and err.count("\n") == 1 and "another extraction config" in err and "--overwrite" in err


def test_info_json_and_table(capsys, tmp_path, tiny_bert_dir):
    path = write_lines(tmp_path / "x.csv", ["text,label", "good,pos", "bad,neg", "fine,pos"])
    run_cli(capsys, "extract", str(path), "-o", str(tmp_path / "s.h5"), "--model", str(tiny_bert_dir), "-q")
    code, out, _ = run_cli(capsys, "info", str(tmp_path / "s.h5"), "--json")
    details = json.loads(out)
    assert code == 0 and details["rows"] == 3 and details["complete"] and details["label_counts"] == {"neg": 1, "pos": 2}
    assert details["timings"]["rows_this_run"] == 3 and details["hardware"]["device"] == "cpu"
    code, out, _ = run_cli(capsys, "info", str(tmp_path / "s.h5"))
    assert code == 0 and "3 of 3" in out and "neg 1, pos 2" in out


def committed_rows(path):
    """The rows a reader sees committed, read as featx's readers do during writing (with HDF5's lock)."""
    try:
        with featx.open_store(path, allow_incomplete=True) as store:
            return store.n_done
    except featx.FeatxError:
        return 0


def test_sigkill_then_rerun_gives_the_uninterrupted_store(tmp_path, tiny_bert_dir):
    lines = [f"review number {i}: " + "good " * (i % 40) for i in range(3000)]
    path = write_lines(tmp_path / "reviews.txt", lines)
    command = [sys.executable, "-m", "featx", "extract", str(path), "-o", str(tmp_path / "s.h5"),
               "--model", str(tiny_bert_dir), "--pooling", "mean,max", "--dtype", "fp32",
               "--window-rows", "32", "--batch-tokens", "256", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env)
    deadline = time.time() + 120
    while committed_rows(tmp_path / "s.h5") < 200 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = committed_rows(tmp_path / "s.h5")
    assert 0 < killed_at < len(lines), "the kill must land part-way for this test to mean anything"
    run_to_end(command, env)
    with featx.open_store(tmp_path / "s.h5") as resumed:
        assert resumed.info()["timings"]["resumed_from_row"] >= killed_at
        reference = featx.extract(path, tmp_path / "ref.h5", model=str(tiny_bert_dir), pooling="mean,max",
                                  dtype="fp32", progress=False)
        with reference:
            np.testing.assert_array_equal(resumed.ids, reference.ids)
            for name in ("mean", "max"):
                np.testing.assert_allclose(resumed.load(name)[0], reference.load(name)[0], atol=1e-5)


def test_bare_featx_shows_the_help_not_an_error(capsys):
    code, out, err = run_cli(capsys)
    assert code == 0 and out.startswith("Usage: featx") and "extract" in out and err == ""


def test_featx_heads_and_modalities_list_what_is_registered(cli):
    from featx.heads import HEAD_KINDS
    from featx.modalities import MODALITIES

    listed = json.loads(cli("heads", "--json").out)
    assert [head["kind"] for head in listed] == list(HEAD_KINDS)
    for head in listed:
        declared = [name for name in HEAD_KINDS[head["kind"]].parameter_constraints if name != "random_state"]
        assert [p["name"] for p in head["parameters"]] == declared and all(p["may_be"] for p in head["parameters"])
    mlp = next(head for head in listed if head["kind"] == "mlp")
    assert mlp["tasks"] == ["single-label", "multi-label", "regression"] and {"name": "hidden", "default": 256,
                                                                               "may_be": "an integer >= 1"} in mlp["parameters"]
    text = cli("heads").out
    assert "logreg: logistic regression" in text and "  hidden=256  (an integer >= 1)" in text
    modalities = json.loads(cli("modalities", "--json").out)
    assert {m["name"] for m in modalities} == set(MODALITIES) >= {"text", "image"}
    image = next(m for m in modalities if m["name"] == "image")
    assert list(image["row_flags"]) == ["truncated", "skipped"] and image["uses"] == ["skip_bad"]
    assert image["frontier_backbones"][0]["model"] == "efficientnet-lite0" and "preprocess" in image["config_fields"]
    assert "text: default model all-MiniLM-L6-v2" in cli("modalities").out


def test_featx_extract_flags_are_made_from_the_library_option_groups():
    """The CLI restated featx.options: 30 hand-written parameters with their own defaults (issue 32).
    Every field of the groups that has a help line is a flag with the field's default and help; the
    rest of the command is the input options and the launch flags."""
    import dataclasses

    from featx.cli import cli as group
    from featx.cli.options import EXTRACT_GROUPS

    command = group.commands["extract"]
    params = {param.name: param for param in command.params}
    fields = [f for g in EXTRACT_GROUPS for f in dataclasses.fields(g) if "help" in f.metadata]
    assert len(fields) >= 24
    for field in fields:
        param = params[field.name]
        assert param.help == field.metadata["help"], field.name
        assert param.default == (None if field.metadata.get("negatable") else field.default), field.name
    assert set(params) - {f.name for f in fields} == {
        "input", "output", "shard_spec", "merge_after", "quiet", "text_column", "image_column", "label_column",
        "multi_label", "label_columns", "target", "allow_empty_labels", "label_names", "where", "id_column", "fmt",
        "no_header", "encoding", "engine", "shards", "address"}
