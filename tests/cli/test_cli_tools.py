"""``losskit doctor FILE``: a loss history read from CSV/TSV/JSONL and diagnosed.

The curves are built here from formulas whose diagnosis is known in advance (a clean
exponential decay, a NaN at a known step, a loss pinned at ln 10, a validation loss that
turns up while training falls); the command runs as a user runs it (a fresh
``python -m losskit`` process for the main paths, ``losskit.cli.main`` for the error
paths) and through a parser built here around ``add_commands``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from losskit.cli.tools import add_commands, read_history
from losskit.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "losskit", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return path


def _decay(n=200, seed=0):
    """A healthy curve: 2 e^{-i/40} + 0.1 with 1% noise."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    return 2.0 * np.exp(-i / 40.0) + 0.1 + 0.01 * rng.normal(size=n)


# ----------------------------------------------------------------------------- main paths
def test_healthy_curve_exit_0_and_says_healthy(tmp_path):
    loss = _decay()
    val = loss + 0.05  # tracks training: no gap opens
    path = _write_csv(tmp_path / "h.csv", ["step", "loss", "val_loss"],
                      [(10 * i, f"{a:.6f}", f"{b:.6f}") for i, (a, b) in
                       enumerate(zip(loss, val))])
    proc = _run(["doctor", str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "healthy" in proc.stdout
    assert "200 training loss values (steps 0 to 1990), 200 validation" in proc.stdout
    assert "[error]" not in proc.stdout and "[warning]" not in proc.stdout


def test_nan_is_an_error_at_its_step_exit_1(tmp_path):
    loss = list(_decay(60))
    rows = [(100 * (i + 1), "nan" if i == 37 else f"{v:.6f}") for i, v in enumerate(loss)]
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"], rows)
    proc = _run(["doctor", str(path), "--json"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["file"] == str(path)
    first = report["findings"][0]
    assert (first["code"], first["level"], first["step"]) == ("non_finite", "error", 3800)
    assert first["advice"]


def test_stuck_at_ln_k_fails_the_check(tmp_path):
    rng = np.random.default_rng(1)
    # a 10-class classifier that never learns: loss = ln 10 = 2.302585 (+- 0.2%)
    loss = math.log(10) * (1 + 0.002 * rng.normal(size=120))
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(json.dumps({"step": i, "loss": float(v)})
                              for i, v in enumerate(loss)) + "\n")
    proc = _run(["doctor", str(path), "--num-classes", "10"], tmp_path)
    assert proc.returncode == 1, proc.stderr  # an error: the check fails
    assert "[error] stuck_at_chance" in proc.stdout
    assert "ln 10 = 2.3026" in proc.stdout
    assert "advice:" in proc.stdout
    assert "healthy" not in proc.stdout


def _stuck_history(tmp_path, level, name="h.csv", n=2000, plateau_from=200, noise=0.002):
    """Falls from level + 1.7 to ``level`` by ``plateau_from``, then stays there."""
    rng = np.random.default_rng(2)
    i = np.arange(n)
    loss = (1.7 * np.exp(-i / (plateau_from / 8)) + level) * (1 + noise * rng.normal(size=n))
    return _write_csv(tmp_path / name, ["step", "loss"],
                      [(10 * j, f"{v:.7f}") for j, v in enumerate(loss)])


def test_issue_curve_stuck_at_ln_10_for_1800_of_2000_steps(tmp_path, capsys):
    path = _stuck_history(tmp_path, math.log(10))
    # with --num-classes: an error, exit 1, "ok": false
    assert main(["doctor", str(path), "--num-classes", "10", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["verdict"] == "failed"
    (finding,) = report["findings"]
    assert (finding["code"], finding["level"]) == ("stuck_at_chance", "error")
    assert finding["num_classes"] == 10
    # within 5% of ln 10 from 1.7 e^{-i/25} = 0.05 ln 10, i = 67.2: step 672
    i_in = 25 * math.log(1.7 / (0.05 * math.log(10)))
    assert abs(finding["step"] - 10 * i_in) <= 150, finding["step"]
    # without it: the plateau at ln 10 is still reported, with K = 10
    assert main(["doctor", str(path)]) == 1
    out = capsys.readouterr().out
    assert "no problems found" not in out and "healthy" not in out
    assert "[error] stuck_at_chance" in out and "10 classes" in out
    assert "ln 10 = 2.3026" in out
    assert main(["doctor", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [(f["code"], f["num_classes"]) for f in report["findings"]] == \
        [("stuck_at_chance", 10)]


def test_without_num_classes_a_plateau_at_ln_2_names_k_2(tmp_path, capsys):
    path = _stuck_history(tmp_path, math.log(2), noise=0.0005)
    assert main(["doctor", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [(f["code"], f["level"], f["num_classes"]) for f in report["findings"]] == \
        [("stuck_at_chance", "error", 2)]
    assert "ln 2 = 0.69315" in report["findings"][0]["message"]


def test_without_num_classes_an_exact_ln_10_plateau_is_named(tmp_path, capsys):
    loss = [math.log(10)] * 50
    path = _write_csv(tmp_path / "h.csv", ["loss"], [(v,) for v in loss])
    assert main(["doctor", str(path), "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["code"], f["num_classes"]) for f in findings] == [("stuck_at_chance", 10)]
    assert main(["doctor", str(path), "--json", "--num-classes", "10"]) == 1
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert codes == ["stuck_at_chance"]


def test_plateau_at_no_ln_k_is_not_called_chance(tmp_path, capsys):
    # a loss that settles at 1.25: between ln 3 = 1.0986 and ln 4 = 1.3863
    path = _stuck_history(tmp_path, 1.25, noise=0.0005)
    assert main(["doctor", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "stuck_at_chance" not in [f["code"] for f in report["findings"]]


def test_one_point_history_is_too_short_to_judge(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"], [(1, 2.3)])
    assert main(["doctor", str(path)]) == 3
    out = capsys.readouterr().out
    assert "too short to judge" in out and "healthy" not in out
    assert main(["doctor", str(path), "--json", "--num-classes", "10"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["healthy"] is False
    assert report["verdict"] == "too_short" and report["num_points"] == 1
    assert report["findings"] == []


def test_empty_history_is_too_short_to_judge(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"], [])  # a header only
    assert main(["doctor", str(path)]) == 3
    out = capsys.readouterr().out
    assert "0 training loss values" in out and "too short to judge" in out
    assert main(["doctor", str(path), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["verdict"], report["num_points"]) == (False, "too_short", 0)


def test_overfitting_from_lightning_style_rows(tmp_path, capsys):
    """Training and validation values on separate rows, the other cell empty."""
    rows = []
    for i in range(300):
        step = 10 * i
        rows.append((0, step, f"{2.0 * math.exp(-i / 60) + 0.05:.6f}", None))
        if i % 10 == 9:  # validation every 100 steps: steeply down to step 1490, then up
            v = 0.6 + (0.01 * (149 - i) if i <= 149 else 0.002 * (i - 149))
            rows.append((0, step, None, f"{v:.6f}"))
    path = _write_csv(tmp_path / "metrics.csv", ["epoch", "step", "train_loss", "val_loss"],
                      rows)
    assert main(["doctor", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["columns"] == {"loss": "train_loss", "val_loss": "val_loss", "step": "step"}
    assert report["num_points"] == 300 and report["num_val_points"] == 30
    (finding,) = report["findings"]
    assert finding["code"] == "overfitting"
    # the validation minimum 0.6 at i = 149, logged at step 1490 (a 3-point moving median
    # keeps it there: 0.62 at 1490 and 1590, 0.7 at 1390; the first minimum is reported)
    assert finding["step"] == 1490


def test_diverging_is_an_error(tmp_path, capsys):
    loss = [1.0 * 1.05 ** i for i in range(80)]
    path = tmp_path / "h.tsv"
    path.write_text("iteration\tloss\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(loss)))
    assert main(["doctor", str(path)]) == 1
    out = capsys.readouterr().out
    assert "[error] diverging" in out and "advice:" in out


def test_jsonl_with_nulls_and_aliases(tmp_path):
    path = tmp_path / "h.ndjson"
    lines = [{"global_step": 1, "training_loss": 3.0, "eval_loss": None},
             {"global_step": 2, "training_loss": 2.0},
             {"global_step": 3, "training_loss": None, "eval_loss": 2.5},
             {"global_step": 4, "training_loss": 1.0, "eval_loss": 2.0}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    h = read_history(path)
    assert (h.steps, h.losses) == ([1, 2, 4], [3.0, 2.0, 1.0])
    assert (h.val_steps, h.val_losses) == ([3, 4], [2.5, 2.0])
    assert h.columns == {"loss": "training_loss", "val_loss": "eval_loss", "step": "global_step"}


def test_no_step_column_uses_row_index(tmp_path):
    path = _write_csv(tmp_path / "h.csv", ["Loss", "VAL_LOSS"],
                      [(3, None), (2, 2.5), (None, 2.4), (1, None)])
    h = read_history(path)
    assert (h.steps, h.losses, h.val_steps, h.val_losses) == \
        ([0, 1, 3], [3.0, 2.0, 1.0], [1, 2], [2.5, 2.4])


def test_through_a_parser_built_around_add_commands(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="losskit")
    add_commands(parser.add_subparsers(dest="command"))
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"],
                      [(i, f"{v:.6f}") for i, v in enumerate(_decay(40))])
    args = parser.parse_args(["doctor", str(path), "--window", "3"])
    assert args.func(args) == 0
    assert "(smoothing window 3)" in capsys.readouterr().out
    args = parser.parse_args(["eval", "--loss", "mse", "a.npy", "b.npy"])
    assert (args.pred, args.labels, args.more, args.reduction) == ("a.npy", "b.npy", [], "mean")
    args = parser.parse_args(["atlas", "x.html"])
    assert args.out == "x.html"


def test_help_lists_the_commands_and_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("doctor", "atlas", "eval"):
        assert f"    {cmd} " in out
    assert main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--num-classes" in out and "losskit doctor metrics.csv" in out


# ----------------------------------------------------------------------------- errors
def _error(args, capsys):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def test_missing_file(tmp_path, capsys):
    code, err = _error(["doctor", str(tmp_path / "nope.csv")], capsys)
    assert code == 2
    assert "losskit doctor: error: no such loss history:" in err and "nope.csv" in err


def test_unknown_extension(tmp_path, capsys):
    path = tmp_path / "h.txt"
    path.write_text("loss\n1\n")
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "unknown file type '.txt'" in err and ".jsonl" in err


def test_missing_loss_column_lists_the_columns(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["step", "accuracy"], [(1, 0.5)])
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2
    assert "no training-loss column" in err and "'accuracy'" in err and "'train_loss'" in err


def test_non_numeric_value_names_the_line(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"],
                      [(1, 2.0), (2, 1.5), (3, "oops"), (4, 1.0)])
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 4: loss 'oops' is not a number" in err


def test_bad_json_line(tmp_path, capsys):
    path = tmp_path / "h.jsonl"
    path.write_text('{"loss": 1}\n{"loss": 2\n')
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 2: not valid JSON" in err
    path.write_text('{"loss": 1}\n[1, 2]\n')
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 2: expected a JSON object" in err
    path.write_text('{"loss": true}\n')
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 1: loss is true, not a number" in err


def test_steps_must_increase(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"], [(1, 2.0), (2, 1.5), (2, 1.4)])
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 4: step 2 does not increase (line 3 had 2)" in err
    path = _write_csv(tmp_path / "h.csv", ["step", "loss"], [(1, 2.0), ("", 1.5)])
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "line 3: the 'step' column is empty" in err


def test_two_loss_columns_are_ambiguous(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["loss", "train_loss"], [(1, 1)])
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "'loss', 'train_loss' both look like the loss" in err


def test_empty_files_and_empty_columns(tmp_path, capsys):
    path = tmp_path / "h.csv"
    path.write_text("")
    code, err = _error(["doctor", str(path)], capsys)
    assert code == 2 and "the file is empty" in err
    # a loss column empty on every row: no training history yet, too short to judge
    path = _write_csv(tmp_path / "h.csv", ["loss", "val_loss"], [(None, 1.0)])
    assert main(["doctor", str(path)]) == 3
    out = capsys.readouterr().out
    assert "too short to judge" in out and "0 training loss values" in out


def test_bad_num_classes_is_a_usage_error(tmp_path, capsys):
    path = _write_csv(tmp_path / "h.csv", ["loss"], [(1,)])
    code, err = _error(["doctor", str(path), "--num-classes", "1"], capsys)
    assert code == 2 and "expected an integer >= 2; got 1" in err
