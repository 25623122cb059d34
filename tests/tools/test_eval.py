"""``losskit eval``: a loss over .npy/.csv/.parquet files, streamed in chunks or on Dask.

References are independent: ``torch.nn.functional.cross_entropy`` (class weights and
``ignore_index``) and NumPy formulas, with sample weights and the weighted mean's
denominator written out here. The streamed value must equal them for any chunk size,
and equal the loss's own in-memory value (the point of streaming). Parquet needs
pyarrow and the cluster test ``distributed``; both skip cleanly without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losskit as lk
from losskit.cli.tools import parse_option
from loss_cases import CASE_IDS, CASES
from losskit.cli import main
from losskit.evaluate import (ArraySource, EvalResult, NonFiniteInputError, evaluate,
                              find_loss, open_array)

SRC = Path(__file__).resolve().parents[2] / "src"
N, K = 1003, 5


def _run(args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "losskit", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=180)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(N, K)).astype(np.float32)
    y = rng.integers(0, K, size=N)
    y[::7] = -100  # ignored
    sw = rng.uniform(0.0, 2.0, size=N)
    cw = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    return z, y, sw, cw


def _torch_ce(z, y, *, cw=None, sw=None, reduction="mean"):
    """softmax cross-entropy from torch's per-example values; the weighted mean by hand."""
    torch = pytest.importorskip("torch")
    zt = torch.from_numpy(np.asarray(z, dtype=np.float64))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    wt = None if cw is None else torch.from_numpy(cw)
    per = torch.nn.functional.cross_entropy(zt, yt, weight=wt, ignore_index=-100,
                                            reduction="none").numpy()  # w_{y_n} * nll_n
    keep = y != -100
    w = np.where(keep, 1.0 if cw is None else cw[np.where(keep, y, 0)], 0.0)
    s = np.ones(len(y)) if sw is None else sw
    total = float(np.sum(s * per))
    if reduction == "sum":
        return total
    if reduction == "batchmean":
        return total / len(y)
    return total / float(np.sum(s * w))


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("chunk", [1, 64, 1000, N, 5000])
def test_streamed_npy_equals_torch_with_class_and_sample_weights(tmp_path, data, chunk):
    z, y, sw, cw = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", sw)
    r = evaluate("softmax_cross_entropy", tmp_path / "z.npy", tmp_path / "y.npy",
                 sample_weight=tmp_path / "w.npy", chunk_size=chunk,
                 options={"class_weight": list(cw), "ignore_index": -100})
    assert r.chunks == -(-N // chunk) and r.rows == N
    assert r.value == pytest.approx(_torch_ce(z, y, cw=cw, sw=sw), rel=1e-12)
    # the mean's denominator: sum of s_n c_{y_n} over the targets that are not ignored
    keep = y != -100
    assert r.weight == pytest.approx(float(np.sum(sw[keep] * cw[y[keep]])), rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
def test_reductions(data, reduction):
    z, y, _, _ = data
    r = evaluate("softmax_cross_entropy", z, y, reduction=reduction, chunk_size=100,
                 options={"ignore_index": -100})
    assert r.value == pytest.approx(_torch_ce(z, y, reduction=reduction), rel=1e-12)


def test_elementwise_loss_mean_counts_elements_and_weights_broadcast():
    rng = np.random.default_rng(1)
    p, t, s = rng.normal(size=(301, 3)), rng.normal(size=(301, 3)), rng.uniform(size=301)
    sq = (p - t) ** 2
    r = evaluate("mse", p, t, chunk_size=40)
    assert r.weight == 301 * 3 and r.value == pytest.approx(sq.mean(), rel=1e-12)
    # a weight per example multiplies each of its 3 elements: the mean divides by 3 sum(s)
    r = evaluate("mse", p, t, sample_weight=s, chunk_size=40)
    assert r.value == pytest.approx(float((s[:, None] * sq).sum() / (3 * s.sum())), rel=1e-12)
    r = evaluate("mse", p, t, sample_weight=s, chunk_size=40, reduction="batchmean")
    assert r.value == pytest.approx(float((s[:, None] * sq).sum() / 301), rel=1e-12)


def test_streamed_equals_in_memory_across_losses():
    """The streaming identity for whatever of these losses the catalog holds."""
    rng = np.random.default_rng(2)
    names = {loss.name for loss in lk.catalog()}
    cases = {
        "huber": (rng.normal(size=(97, 2)), rng.normal(size=(97, 2))),
        "sigmoid_binary_cross_entropy": (rng.normal(size=(97, 4)),
                                         rng.integers(0, 2, (97, 4)).astype(float)),
        "multiclass_hinge": (rng.normal(size=(97, 4)), rng.integers(0, 4, 97)),
        "dice_loss": (rng.uniform(0.01, 0.99, size=(97, 3, 4, 4)),
                      rng.integers(0, 3, (97, 4, 4))),
        "gaussian_nll": (rng.normal(size=97), rng.normal(size=97),
                         rng.uniform(0.5, 2.0, size=97)),
    }
    ran = 0
    for name, arrays in cases.items():
        if name not in names:
            continue
        loss = find_loss(name)
        for reduction in ("mean", "sum"):
            expected = float(loss(*arrays, reduction=reduction))
            got = evaluate(name, *arrays, chunk_size=10, reduction=reduction).value
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15), (name, reduction)
        ran += 1
    assert ran >= 2


def test_gaussian_nll_three_files(tmp_path):
    if "gaussian_nll" not in {loss.name for loss in lk.catalog()}:
        pytest.skip("gaussian_nll is not in the catalog")
    rng = np.random.default_rng(3)
    mu, t, v = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.5, 2.0, size=50)
    for name, a in (("mu", mu), ("t", t), ("v", v)):
        np.save(tmp_path / f"{name}.npy", a)
    r = evaluate("gaussian_nll", *(tmp_path / f"{n}.npy" for n in ("mu", "t", "v")),
                 chunk_size=7)
    # 1/2 (log v + (mu - t)^2 / v), averaged (full=False: no 1/2 log 2 pi)
    assert r.value == pytest.approx(float(np.mean(0.5 * (np.log(v) + (mu - t) ** 2 / v))),
                                    rel=1e-12)


def test_every_target_ignored_gives_zero(data):
    z, _, _, _ = data
    y = np.full(N, -100)
    r = evaluate("softmax_cross_entropy", z, y, chunk_size=100,
                 options={"ignore_index": -100})
    assert (r.value, r.total, r.weight) == (0.0, 0.0, 0.0)  # a mean over nothing is 0


def test_only_one_chunk_is_read_at_a_time(data):
    z, y, _, _ = data

    class Recording(ArraySource):
        def __init__(self, array):
            super().__init__("recorded", array.shape, array.dtype)
            self.array, self.sizes = array, []

        def read(self, start, stop):
            self.sizes.append(stop - start)
            return np.array(self.array[start:stop])

    zs, ys = Recording(z), Recording(y)
    evaluate("softmax_cross_entropy", zs, ys, chunk_size=128,
             options={"ignore_index": -100})
    assert zs.sizes == ys.sizes == [128] * 7 + [N - 7 * 128]


def test_default_chunk_size_targets_64_mb(data):
    z, y, _, _ = data
    r = evaluate("softmax_cross_entropy", z, y, options={"ignore_index": -100})
    assert r.chunks == 1 and r.chunk_rows == 64 * 2**20 // (8 * K + 8)


# ----------------------------------------------------------------------------- CSV
def test_csv_with_header_and_blank_lines(tmp_path, data):
    z, y, _, _ = data
    z64 = z.astype(np.float64)
    lines = ["a,b,c,d,e"] + [",".join(repr(float(v)) for v in row) for row in z64]
    lines.insert(500, "")  # a blank line in the middle is skipped
    (tmp_path / "z.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(str(v) for v in y) + "\n")
    src = open_array(tmp_path / "y.csv")
    assert (src.shape, src.dtype) == ((N,), np.dtype(np.int64))
    src = open_array(tmp_path / "z.csv")
    assert (src.shape, src.dtype, src.header) == ((N, K), np.dtype(np.float64), list("abcde"))
    # block reads across the 1024-row index and the blank line
    np.testing.assert_array_equal(src.read(495, 1003), z64[495:1003])
    for chunk in (33, 1024, 2000):
        r = evaluate("softmax_cross_entropy", tmp_path / "z.csv", tmp_path / "y.csv",
                     chunk_size=chunk, options={"ignore_index": -100})
        assert r.value == pytest.approx(_torch_ce(z, y), rel=1e-12)


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y\n1.0,2.0\n3.0,oops\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 3, column 2: 'oops' is not a number"):
        evaluate("mse", path, np.zeros((2, 2)))
    path.write_text("1.0,2.0\n3.0\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 2: 1 values where the file has 2 col"):
        evaluate("mse", path, np.zeros((2, 2)))
    path.write_text("")
    with pytest.raises(ValueError, match="the file is empty"):
        open_array(path)
    labels = tmp_path / "y.csv"
    labels.write_text("1\n2\nx\n")  # the header is only ever the first line
    with pytest.raises(ValueError, match=r"y\.csv, line 3, column 1: 'x' is not an integer"):
        evaluate("multiclass_hinge", np.zeros((3, 4)), labels)


# ----------------------------------------------------------------------------- parquet
def test_parquet_row_groups_and_chunks_misaligned(tmp_path, data):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    z, y, sw, cw = data
    table = pa.table({f"c{j}": z[:, j] for j in range(K)})
    pq.write_table(table, tmp_path / "z.parquet", row_group_size=100)
    pq.write_table(pa.table({"label": y}), tmp_path / "y.parquet", row_group_size=300)
    src = open_array(tmp_path / "z.parquet")
    assert (src.shape, src.dtype) == ((N, K), np.dtype(np.float64))
    np.testing.assert_array_equal(src.read(95, 405), z[95:405].astype(np.float64))
    for chunk in (1, 64, 100, 333, 5000):  # streamed blocks have exactly the chunk sizes
        bounds = [(a, min(a + chunk, N)) for a in range(0, N, chunk)]
        blocks = list(src.blocks(bounds))
        assert [len(b) for b in blocks] == [b - a for a, b in bounds]
        np.testing.assert_array_equal(np.concatenate(blocks), z.astype(np.float64))
    r = evaluate("softmax_cross_entropy", tmp_path / "z.parquet", tmp_path / "y.parquet",
                 chunk_size=64, options={"ignore_index": -100, "class_weight": cw})
    assert r.value == pytest.approx(_torch_ce(z, y, cw=cw), rel=1e-12)
    pq.write_table(pa.table({"s": pa.array(["a"] * 3)}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"column 's' has type string"):
        open_array(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"x": pa.array([1.0, None, 2.0])}), tmp_path / "null.parquet")
    with pytest.raises(ValueError, match=r"column 'x' is null at row 1"):
        evaluate("mse", tmp_path / "null.parquet", np.zeros(3))


def test_parquet_without_pyarrow_says_which_extra(tmp_path, monkeypatch):
    path = tmp_path / "z.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError, match=r"needs pyarrow: pip install 'losskit\[data\]'"):
        open_array(path)


# ----------------------------------------------------------------------------- dask
def test_dask_threaded_matches(tmp_path, data, monkeypatch):
    pytest.importorskip("dask.array")
    z, y, sw, cw = data
    np.save(tmp_path / "z.npy", z)
    (tmp_path / "y.csv").write_text("\n".join(str(v) for v in y) + "\n")
    monkeypatch.setitem(sys.modules, "distributed", None)  # no cluster: Dask's threads
    r = evaluate("softmax_cross_entropy", tmp_path / "z.npy", tmp_path / "y.csv",
                 sample_weight=sw, chunk_size=200, dask=True,
                 options={"ignore_index": -100, "class_weight": cw})
    assert r.backend.startswith("dask threaded") and r.chunks == 6
    assert r.value == pytest.approx(_torch_ce(z, y, cw=cw, sw=sw), rel=1e-12)


def test_dask_local_cluster_matches(tmp_path, data):
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    z, y, sw, cw = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        r = evaluate("softmax_cross_entropy", tmp_path / "z.npy", tmp_path / "y.npy",
                     chunk_size=256, dask=True, client=client,
                     options={"ignore_index": -100, "class_weight": cw})
    assert r.backend == "dask.distributed (1 worker, 1 thread)"
    assert r.value == pytest.approx(_torch_ce(z, y, cw=cw), rel=1e-12)
    assert r.total is None and r.weight is None


# ----------------------------------------------------------------------------- bad rows
def _labels_with_a_bad_row(n, k, bad_row, seed=5):
    y = np.random.default_rng(seed).integers(0, k, size=n)
    y[bad_row] = k + 4  # no class k + 4 among 0..k-1
    return y


@pytest.mark.parametrize("chunk", [None, 1, 300, 1000])
def test_a_bad_row_is_named_not_its_chunk(chunk):
    z = np.random.default_rng(4).normal(size=(1000, 5))
    y = _labels_with_a_bad_row(1000, 5, 537)
    with pytest.raises(ValueError) as info:
        evaluate("softmax_cross_entropy", z, y, chunk_size=chunk)
    msg = str(info.value)
    assert "row 537" in msg and "rows " not in msg, msg
    assert "got 9" in msg  # why: the class index 5 + 4 that is out of range


def test_the_first_of_several_bad_rows_is_named():
    z = np.random.default_rng(4).normal(size=(2000, 3))
    y = _labels_with_a_bad_row(2000, 3, 1999)
    y[1234] = -1
    y[1500] = 7
    with pytest.raises(ValueError, match=r"\brow 1234\b"):
        evaluate("softmax_cross_entropy", z, y, chunk_size=800)


def test_a_bad_row_in_a_csv_file_names_its_line(tmp_path):
    z = np.random.default_rng(4).normal(size=(50, 3))
    y = _labels_with_a_bad_row(50, 3, 20)
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(str(v) for v in y) + "\n")
    # the header is line 1: row 20 (0-based) is line 22
    with pytest.raises(ValueError, match=r"row 20 \(0-based; line 22 of .*y\.csv\)"):
        evaluate("softmax_cross_entropy", z, tmp_path / "y.csv", chunk_size=16)


@pytest.mark.parametrize("options, key", [
    ({"label_smoothing": "abc"}, "label_smoothing"),
    ({"label_smoothing": 2.0}, "label_smoothing"),  # outside [0, 1]
    ({"class_weight": [1.0, 2.0, 3.0]}, "class_weight"),  # 3 weights for 5 classes
    ({"ignore_index": -100, "label_smoothing": "abc"}, "label_smoothing"),
])
def test_a_bad_option_is_named_not_blamed_on_rows(data, options, key):
    z, y, _, _ = data
    options = {"ignore_index": -100, **options}
    with pytest.raises(ValueError) as info:
        evaluate("softmax_cross_entropy", z, y, chunk_size=300, options=options)
    msg = str(info.value)
    assert f"option {key}=" in msg and "row" not in msg, msg
    assert "ignore_index" not in msg.split(":")[0]  # the good option is not blamed


# ----------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("chunk", [None, 64, 1000])
def test_nan_in_the_prediction_names_its_row_and_column(data, chunk):
    z, y, _, _ = data
    z = z.astype(np.float64)
    z[701, 2] = np.nan
    z[900, 0] = np.inf
    with pytest.raises(NonFiniteInputError) as info:
        evaluate("softmax_cross_entropy", z, y, chunk_size=chunk,
                 options={"ignore_index": -100})
    e = info.value
    assert isinstance(e, ValueError)
    assert (e.input, e.row, e.column, e.value) == ("prediction", 701, 2, "nan")
    assert "row 701" in str(e) and "column 2" in str(e) and "prediction" in str(e)


def test_inf_in_the_target_and_in_sample_weights():
    p = np.zeros((10, 2))
    t = np.ones((10, 2))
    t[6, 1] = -np.inf
    with pytest.raises(NonFiniteInputError) as info:
        evaluate("mse", p, t, chunk_size=4)
    assert (info.value.input, info.value.row, info.value.column, info.value.value) == \
        ("target", 6, 1, "-inf")
    w = np.ones(10)
    w[3] = np.nan
    with pytest.raises(NonFiniteInputError) as info:
        evaluate("mse", p, p, sample_weight=w, chunk_size=4)
    assert (info.value.input, info.value.row, info.value.column) == ("sample_weight", 3, None)
    # the first non-finite row across the inputs: target row 6 before prediction row 8
    p[8, 0] = np.nan
    with pytest.raises(NonFiniteInputError) as info:
        evaluate("mse", p, t)
    assert (info.value.input, info.value.row) == ("target", 6)
    # asked for, NaN propagates as in the loss itself
    r = evaluate("mse", p, t, check_finite=False)
    assert np.isnan(r.value)


def test_an_earlier_bad_row_comes_before_a_later_nan():
    z = np.random.default_rng(4).normal(size=(100, 3))
    y = _labels_with_a_bad_row(100, 3, 40)
    z[60, 1] = np.nan
    with pytest.raises(ValueError, match=r"\brow 40\b") as info:
        evaluate("softmax_cross_entropy", z, y)
    assert not isinstance(info.value, NonFiniteInputError)
    z[30, 0] = np.inf
    with pytest.raises(NonFiniteInputError, match=r"\brow 30\b"):
        evaluate("softmax_cross_entropy", z, y)


def test_dask_reports_the_first_non_finite_row(data):
    pytest.importorskip("dask.array")
    z, y, _, _ = data
    z = z.astype(np.float64)
    z[555, 4] = np.nan
    with pytest.raises(NonFiniteInputError) as info:
        evaluate("softmax_cross_entropy", z, y, chunk_size=200, dask=True,
                 options={"ignore_index": -100})
    assert (info.value.row, info.value.column) == (555, 4)


# ----------------------------------------------------------------------------- the command
def test_command_streams_and_prints_json(tmp_path, data):
    z, y, sw, cw = data
    np.save(tmp_path / "z.npy", z)
    (tmp_path / "y.csv").write_text("label\n" + "\n".join(str(v) for v in y) + "\n")
    proc = _run(["eval", "--loss", "softmax-cross-entropy", "z.npy", "y.csv",
                 "--option", "ignore_index=-100", "--option", f"class_weight={cw.tolist()}",
                 "--chunk-size", "100", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    out = json.loads(proc.stdout)
    assert (out["loss"], out["rows"], out["chunks"]) == ("softmax_cross_entropy", N, 11)
    assert out["value"] == pytest.approx(_torch_ce(z, y, cw=cw), rel=1e-12)


def test_command_text_output_and_dask(tmp_path, data):
    pytest.importorskip("dask.array")
    z, y, _, _ = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    proc = _run(["eval", "--loss", "softmax_cross_entropy", "z.npy", "y.npy", "--dask",
                 "--option", "ignore_index=-100", "--reduction", "sum", "--chunk-size",
                 "500", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) if " " in line else (line, "")
                 for line in proc.stdout.splitlines())
    assert lines["reduction"].strip() == "sum"
    assert "dask" in proc.stdout and "3 chunks of up to 500" in proc.stdout
    assert float(lines["value"]) == pytest.approx(_torch_ce(z, y, reduction="sum"),
                                                  rel=1e-12)


def test_progress_bar_on_request(data, capsys):
    z, y, _, _ = data
    evaluate("softmax_cross_entropy", z, y, chunk_size=500, progress=True,
             options={"ignore_index": -100})
    err = capsys.readouterr().err
    assert "\rsoftmax_cross_entropy [" in err and "rows 1003/1003" in err
    evaluate("softmax_cross_entropy", z, y, chunk_size=500, progress=None,
             options={"ignore_index": -100})
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest


def _error(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_command_errors(tmp_path, data, capsys):
    z, y, _, _ = data
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "short.npy", y[:-1])
    zp, yp = str(tmp_path / "z.npy"), str(tmp_path / "y.npy")
    code, err = _error(["eval", "--loss", "softmax_crossentropy", zp, yp], capsys)
    assert code == 2
    assert "unknown loss 'softmax_crossentropy'; did you mean: softmax_cross_entropy" in err
    code, err = _error(["eval", "--loss", "mse", zp, str(tmp_path / "y.txt")], capsys)
    assert code == 2 and "unknown file type '.txt'" in err
    code, err = _error(["eval", "--loss", "mse", zp, str(tmp_path / "nope.npy")], capsys)
    assert code == 2 and "no such file" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp,
                        str(tmp_path / "short.npy")], capsys)
    assert code == 2
    assert f"prediction has {N} ({zp}), target has {N - 1}" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", yp, zp], capsys)
    assert code == 2 and "must be floating (did you swap the prediction and the target?)" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp], capsys)
    # y[0] = -100 (every 7th target is -100): row 0 is the first bad row
    assert code == 2 and "rejected row 0 (0-based)" in err and "ignore_index" in err
    assert "rows 0-1002" not in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--option",
                        "ignore=-100"], capsys)
    assert code == 2 and "has no option 'ignore'; its options: axis, class_weight" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--option",
                        "ignore_index"], capsys)
    assert code == 2 and "--option expects KEY=VALUE" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--option",
                        "class_weight=[1, 2"], capsys)
    assert code == 2 and "--option class_weight: cannot read '[1, 2' as a list" in err
    code, err = _error(["eval", "--loss", "mse", zp, yp, zp], capsys)
    assert code == 2 and "mse takes 2 files, one per input (prediction, target); got 3" in err
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--option",
                        "axis=0"], capsys)
    assert code == 2 and "axis=0 is the first axis" in err
    code, err = _error(["eval", "--loss", "mse", zp, yp, "--chunk-size", "0"], capsys)
    assert code == 2 and "expected an integer >= 1" in err
    code, err = _error(["eval", "--loss", "mse", zp, zp, "--option", "reduction=sum"], capsys)
    assert code == 2 and "use the reduction argument" in err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an npy file at all")
    code, err = _error(["eval", "--loss", "mse", str(bad), zp], capsys)
    assert code == 2 and "not a readable .npy" in err


def test_command_names_the_bad_row_the_bad_option_and_the_first_nan(tmp_path, data,
                                                                    capsys):
    z, y, _, _ = data
    zp, yp = str(tmp_path / "z.npy"), str(tmp_path / "y.npy")
    np.save(zp, z)
    y = y.copy()
    y[y == -100] = 0
    y[777] = 12
    np.save(yp, y)
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp,
                        "--chunk-size", "500"], capsys)
    assert code == 2 and "row 777" in err and "rows 500-" not in err
    y[777] = 1
    np.save(yp, y)
    # an option typo is an option error, not the rows' fault
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--option",
                        "label_smoothing=abc"], capsys)
    assert code == 2 and "--option label_smoothing='abc'" in err and "row" not in err
    # NaN in the inputs: the first non-finite row, and exit 1 (not a value of nan)
    z = z.copy()
    z[321, 3] = np.nan
    z[654, 0] = np.nan
    np.save(zp, z)
    code, err = _error(["eval", "--loss", "softmax_cross_entropy", zp, yp,
                        "--chunk-size", "100"], capsys)
    assert code == 1
    assert "row 321" in err and "column 3" in err and "prediction" in err and "nan" in err
    assert main(["eval", "--loss", "softmax_cross_entropy", zp, yp, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["error"] == "non_finite"
    assert (out["input"], out["row"], out["column"], out["value"]) == \
        ("prediction", 321, 3, "nan")


def test_command_csv_nan_names_row_and_line(tmp_path, capsys):
    (tmp_path / "p.csv").write_text("p\n1.0\n2.0\nnan\n4.0\n")
    (tmp_path / "t.csv").write_text("t\n1.0\n2.0\n3.0\n4.0\n")
    code, err = _error(["eval", "--loss", "mse", str(tmp_path / "p.csv"),
                        str(tmp_path / "t.csv")], capsys)
    assert code == 1 and "row 2" in err and "line 4" in err


def test_api_errors(data):
    z, y, _, _ = data
    with pytest.raises(ValueError, match=r"`reduction` must be one of .* got 'none' \(eval"):
        evaluate("mse", z, z, reduction="none")
    with pytest.raises(ValueError, match="`chunk_size` must be a positive integer; got 0"):
        evaluate("mse", z, z, chunk_size=0)
    with pytest.raises(ValueError, match="mse takes 2 inputs"):
        evaluate("mse", z)
    with pytest.raises(TypeError, match="`loss` must be a loss name"):
        evaluate(3, z, z)
    with pytest.raises(ValueError, match="a 0-d array has no rows"):
        evaluate("mse", np.float64(1.0), np.float64(1.0))


def test_parse_option_and_result_dict():
    assert parse_option("margin=2") == ("margin", 2)
    assert parse_option("label-smoothing=0.1") == ("label_smoothing", 0.1)
    assert parse_option("class_weight=none") == ("class_weight", None)
    r = EvalResult("mse", "mean", 1.5, 3.0, 2.0, 2, 1, 2)
    assert json.loads(json.dumps(r.to_dict()))["value"] == 1.5


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_case_streams_to_its_in_memory_value_or_is_refused(case):
    """Blocks of 2 rows add up to the loss on the whole arrays (every reduction eval
    offers), for every case of the catalog suites; a loss whose batch is not the rows of
    its inputs is refused with its reason."""
    arrays = case.inputs(seed=3)
    loss = case.loss
    if loss.streaming_refusal({**loss.option_defaults(), **getattr(loss, "_defaults", {}),
                               **case.options}):
        with pytest.raises(ValueError, match=rf"^{loss.name} cannot be evaluated a block of "
                                             r"rows at a time: .+; call losskit\."):
            evaluate(loss, *arrays, options=case.options)
        return
    for reduction in ("mean", "sum", "batchmean"):
        expected = float(loss(*arrays, reduction=reduction, **case.options))
        got = evaluate(loss, *arrays, chunk_size=2, reduction=reduction,
                       options=case.options).value
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-14), reduction
