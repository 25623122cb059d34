"""The ``losskit`` command, run as a user runs it: ``python -m losskit`` and the installed
console script, in a fresh process, from a directory outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import losskit.digest
from losskit.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"

# the digest's worked numbers the demo must show: section 2 (sums of squared errors 3 and
# 34), section 3 (287 vs 53 updates, step 1), section 4 (KL in base 10)
DIGEST_NUMBERS = ("287", "53", "0.763", "0.160", "3", "34", "0.036", "2.1900")

# the first release's losses (spec/api.md)
REQUIRED_LOSSES = ("mse", "l2_loss", "mae", "cross_entropy", "softmax_cross_entropy",
                   "nll_loss", "binary_cross_entropy", "sigmoid_binary_cross_entropy",
                   "hinge", "multiclass_hinge")


def _env():
    env = dict(os.environ)
    # the installed package is used; src/ first only makes a non-installed checkout work too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def _run(cmd, tmp_path):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(),
                          timeout=120)


def _console_script():
    bindir = Path(sys.executable).parent
    found = shutil.which("losskit", path=str(bindir)) or shutil.which("losskit")
    if found is None:
        pytest.skip("the `losskit` console script is not installed (pip install -e .)")
    return found


def _has_number(text, number):
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


def _check_demo_output(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for number in DIGEST_NUMBERS:
        assert _has_number(out, number), number
    assert "FAIL" not in out
    assert "source says" in out and "losskit computes" in out


def test_python_m_losskit_demo(tmp_path):
    start = time.perf_counter()
    proc = _run([sys.executable, "-m", "losskit", "demo"], tmp_path)
    elapsed = time.perf_counter() - start
    _check_demo_output(proc)
    assert elapsed < 30  # "well under a minute"; it takes about a second


def test_console_script_demo(tmp_path):
    proc = _run([_console_script(), "demo"], tmp_path)
    _check_demo_output(proc)


def test_demo_shows_the_trajectories(tmp_path):
    proc = _run([sys.executable, "-m", "losskit", "demo", "--every", "100"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"MSE.*287 updates", proc.stdout)
    assert re.search(r"cross-entropy.*53 updates", proc.stdout)
    # step 1 of the MSE trajectory: w = ln 9 = 2.1972, a = 0.9000, dL/dw = 0.036
    assert re.search(r"^\s*1\s+2\.1972\s+0\.9000\s+0\.08000\s+0\.08000\s+0\.03600\s+2\.1900",
                     proc.stdout, re.M)
    assert re.search(r"^\s*100\s", proc.stdout, re.M)
    assert re.search(r"^\s*final\s", proc.stdout, re.M)


def test_list(tmp_path):
    proc = _run([sys.executable, "-m", "losskit", "list"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    for name in REQUIRED_LOSSES:
        assert name in names, name
    header = proc.stdout.splitlines()[0]
    for column in ("name", "prediction", "family", "formula"):
        assert column in header


def test_console_script_list(tmp_path):
    proc = _run([_console_script(), "list"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "softmax_cross_entropy" in proc.stdout


def test_unknown_subcommand(tmp_path):
    proc = _run([sys.executable, "-m", "losskit", "frobnicate"], tmp_path)
    assert proc.returncode != 0
    assert "frobnicate" in proc.stderr and "invalid choice" in proc.stderr
    assert "demo" in proc.stderr and "list" in proc.stderr  # the choices are named
    assert "Traceback" not in proc.stderr


def test_help_has_examples(tmp_path):
    proc = _run([sys.executable, "-m", "losskit", "--help"], tmp_path)
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "losskit demo" in proc.stdout
    assert "losskit list" in proc.stdout


# --------------------------------------------------------------------------- in process
def test_main_returns_codes_instead_of_exiting(capsys):
    assert main(["list"]) == 0
    assert "softmax_cross_entropy" in capsys.readouterr().out
    assert main(["bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err
    assert main(["demo", "--every", "0"]) == 2
    assert main(["list", "--family", "nope"]) == 2
    err = capsys.readouterr().err
    assert "family" in err and "regression" in err and "Traceback" not in err


def test_list_family_filter(capsys):
    assert main(["list", "--family", "regression"]) == 0
    out = capsys.readouterr().out
    assert "mse" in out and "softmax_cross_entropy" not in out


def test_demo_exit_status_is_1_when_a_check_fails(monkeypatch, capsys):
    wrong = losskit.digest.Check("t", "a deliberately wrong number", "1.5", lambda: 2.0)
    monkeypatch.setattr(losskit.digest, "CHECKS", losskit.digest.CHECKS + (wrong,))
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "a deliberately wrong number" in out
