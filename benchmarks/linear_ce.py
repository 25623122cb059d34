"""Benchmark: ``lk.linear_cross_entropy`` against PyTorch's naive and chunked versions.

One step of an output head: the value and the gradients for the hidden features, the
weight and the bias of ``cross_entropy(hidden @ weight.T + bias, labels)``, float32, on
the CPU. Contenders:

* ``losskit-numpy``:  ``lk.linear_cross_entropy.value_and_grad(..., wrt="all")`` on NumPy;
* ``losskit-torch``:  the same call on PyTorch tensors;
* ``losskit-jax``:    the same call on JAX arrays (a ``lax.scan``; timed after a first call
  at the same shapes has compiled it, as in a training loop);
* ``torch-naive``:    ``F.cross_entropy(F.linear(h, W, b), y)`` and ``.backward()``
  (materialises the (N, V) logits and their gradient);
* ``torch-chunked``:  PyTorch 2.13's own ``F.linear_cross_entropy(h, W, y, linear_bias=b,
  options=LinearCrossEntropyOptions())`` (chunked over rows, gradients computed in the
  forward) and ``.backward()``.

Every run is a fresh subprocess on the same saved inputs, so that the peak memory of one
does not hide in another's: the peak is ``VmHWM`` (reset through ``/proc/self/clear_refs``
after the inputs are loaded and a small warm-up call has initialised the libraries) minus
the resident size just before the call. "Beyond gradients" subtracts the bytes of the
three returned gradients (``N*d + V*d + V`` floats), which every contender must produce.
Results are compared with ``torch-naive`` (relative error of the value, and of each
gradient in the Frobenius norm: ``||g - g_naive|| / ||g_naive||``).

Usage::

    python benchmarks/linear_ce.py --out benchmarks/LINEAR_CE.md        # N=4096 d=1024 V=65536
    python benchmarks/linear_ce.py --sizes 4096,1024,65536 2048,1024,32768 --repeats 3
    python benchmarks/linear_ce.py --chunk-size 128 --methods losskit-numpy losskit-torch

The machine this runs on may be shared: the load average before and after is reported,
and each contender's best and median of ``--repeats`` interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("losskit-numpy", "losskit-torch", "losskit-jax", "torch-naive", "torch-chunked")
REFERENCE = "torch-naive"
BASELINE = "torch-chunked"


# ---------------------------------------------------------------------------- worker side
def _status(key: str) -> float:
    """A ``/proc/self/status`` entry in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _step(method, h, W, y, b, chunk_size=None):
    """One value + three gradients; returns them as NumPy arrays (after the timing)."""
    if method.startswith("losskit"):
        from losskit.losses.linear_cross_entropy import linear_cross_entropy  # = lk.linear_cross_entropy

        v, (gh, gw, gb) = linear_cross_entropy.value_and_grad(h, W, y, b, wrt="all",
                                                              chunk_size=chunk_size)
        return v, gh, gw, gb
    import torch.nn.functional as F

    hh = h.detach().requires_grad_(True)
    ww = W.detach().requires_grad_(True)
    bb = b.detach().requires_grad_(True)
    if method == "torch-naive":
        loss = F.cross_entropy(F.linear(hh, ww, bb), y)
    else:
        from torch.nn import LinearCrossEntropyOptions

        loss = F.linear_cross_entropy(hh, ww, y, linear_bias=bb,
                                      options=LinearCrossEntropyOptions())
    loss.backward()
    return loss.detach(), hh.grad, ww.grad, bb.grad


def worker(method: str, data: Path, save: Path | None, chunk_size: int | None) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    h, W, b, y = (np.load(data / f"{k}.npy") for k in ("h", "W", "b", "y"))
    if method == "losskit-jax":
        import jax
        import jax.numpy as jnp

        h, W, b, y = (jnp.asarray(a) for a in (h, W, b, y))
        jax.block_until_ready(_step(method, h, W, y, b))  # compiles for these shapes
    elif method != "losskit-numpy":
        import torch

        torch.set_grad_enabled(True)
        h, W, b, y = (torch.from_numpy(a) for a in (h, W, b, y))
    # warm-up on a small problem: loads the libraries, starts their thread pools
    small = (h[:64], W[:512], y[:64] % 512, b[:512])
    _step(method, *small)
    import gc

    gc.collect()
    exact = _reset_peak()
    base = _status("VmRSS")
    t0 = time.perf_counter()
    out = _step(method, h, W, y, b, chunk_size)
    if method == "losskit-jax":
        import jax

        jax.block_until_ready(out)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    out = [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in out]
    if save is not None:
        for k, o in zip(("value", "gh", "gw", "gb"), out):
            np.save(save / f"{method}-{k}.npy", o)
    print(json.dumps({"method": method, "seconds": seconds, "base_mib": base,
                      "peak_mib": peak, "extra_mib": peak - base, "peak_reset": exact,
                      "value": float(out[0])}))


def peak_worker(lib: str) -> None:
    """Best float32 matrix-product rate of ``lib`` on this machine (GFLOP/s), best of 5."""
    n, k, m = 1024, 1024, 16384
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal((k, m), dtype=np.float32)
    c = np.empty((n, m), dtype=np.float32)
    if lib == "torch":
        import torch

        a, b, c = (torch.from_numpy(x) for x in (a, b, c))
        mm = torch.matmul
    else:
        mm = np.matmul
    best = float("inf")
    for _ in range(6):
        t0 = time.perf_counter()
        mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"lib": lib, "gflops": 2 * n * k * m / best / 1e9}))


# ---------------------------------------------------------------------------- driver
def peak_gflops() -> dict[str, float]:
    out = {}
    for lib in ("numpy", "torch"):
        proc = subprocess.run([sys.executable, __file__, "--peak", lib], capture_output=True,
                              text=True, check=True)
        out[lib] = json.loads(proc.stdout.strip().splitlines()[-1])["gflops"]
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def _versions() -> str:
    code = ("import numpy, torch; print(f'numpy {numpy.__version__}, "
            "torch {torch.__version__}')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def _rel(a: np.ndarray, r: np.ndarray) -> float:
    a = a.astype(np.float64)
    r = r.astype(np.float64)
    den = float(np.linalg.norm(r))
    return float(np.linalg.norm(a - r)) / den if den else float(np.linalg.norm(a))


def run(size, methods, repeats, out_path, chunk_size=None, seed=0):
    n, d, v = size
    grad_mib = (n * d + v * d + v) * 4 / 2**20
    rng = np.random.default_rng(seed)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    errors: dict[str, dict[str, float]] = {}
    load_before = _load()
    before = peak_gflops()
    with tempfile.TemporaryDirectory(prefix="lce-bench-") as tmp:
        data = Path(tmp)
        # nn.Linear-like scale: logits of standard deviation about 1
        np.save(data / "h.npy", rng.standard_normal((n, d), dtype=np.float32))
        np.save(data / "W.npy", (rng.standard_normal((v, d), dtype=np.float32)
                                 / np.float32(np.sqrt(d))))
        np.save(data / "b.npy", rng.standard_normal(v, dtype=np.float32) * np.float32(0.1))
        np.save(data / "y.npy", rng.integers(0, v, size=n))
        for rep in range(repeats):
            for m in methods:
                cmd = [sys.executable, __file__, "--worker", m, "--data", str(data)]
                if chunk_size is not None:
                    cmd += ["--chunk-size", str(chunk_size)]
                if rep == 0:
                    cmd += ["--save", str(data)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"{m} failed:\n{proc.stderr}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[m].append(res)
                print(f"[{rep + 1}/{repeats}] {m:14s} {res['seconds']:7.2f} s  "
                      f"+{res['extra_mib']:7.1f} MiB  (load {_load()})", flush=True)
        if REFERENCE in methods:
            ref = {k: np.load(data / f"{REFERENCE}-{k}.npy") for k in ("value", "gh", "gw", "gb")}
            for m in methods:
                errors[m] = {k: _rel(np.load(data / f"{m}-{k}.npy"), ref[k])
                             for k in ("value", "gh", "gw", "gb")}
    load_after = _load()

    flops = 6.0 * n * d * v  # three products of N x d x V multiply-adds
    after = peak_gflops()  # with the probe before the runs: the best rate seen either time
    peaks = {lib: max(before[lib], after[lib]) for lib in before}
    peak = max(peaks.values())
    setup = (f"One step (value + gradients for hidden, weight and bias) of "
             f"`cross_entropy(hidden @ weight.T + bias, labels)`, float32, CPU: the logits "
             f"alone would be {n * v * 4 / 2**20:.0f} MiB, the three gradients are "
             f"{grad_mib:.0f} MiB.")
    machine = (f"- machine: {_cpu()}, {os.cpu_count()} logical CPUs; {_versions()}; "
               f"Python {platform.python_version()}")
    load = (f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after} "
            "(a shared machine slows every contender; compare within one table)")
    protocol = (f"- {repeats} interleaved run(s) per contender, each in a fresh subprocess; "
                "time of the call only; peak = VmHWM (reset after loading the inputs) minus "
                "the resident size before the call")
    floor = (f"- work: three N x d x V products, {flops / 1e12:.2f} TFLOP. Best float32 "
             "matrix-product rate measured here (1024 x 1024 x 16384, best of 6, before and "
             f"after the runs): numpy {peaks['numpy']:.0f}, torch {peaks['torch']:.0f} "
             "GFLOP/s, so no exact float32 method takes less than about "
             f"{flops / peak / 1e9:.2f} s")
    header = ("| contender | best s | median s | GFLOP/s | vs torch-chunked | peak extra MiB "
              "| beyond gradients MiB | rel. err value | rel. err d hidden "
              "| rel. err d weight | rel. err d bias |")
    lines = [
        f"## N = {n}, d = {d}, V = {v}",
        "",
        setup,
        "",
        machine,
        load,
        (f"- losskit's `chunk_size`: {chunk_size}" if chunk_size else
         "- losskit's `chunk_size`: default (rows per block: 64 MiB of logits on NumPy and "
         "PyTorch, 32 MiB on JAX)"),
        protocol,
        floor,
        "",
        header,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_best = min(r["seconds"] for r in runs[BASELINE]) if BASELINE in runs else None
    for m in methods:
        secs = [r["seconds"] for r in runs[m]]
        extra = max(r["extra_mib"] for r in runs[m])
        ratio = f"{min(secs) / base_best:.2f}x" if base_best else "n/a"
        err = errors.get(m, {})
        errs = [f"{err[k]:.1e}" if k in err else "n/a" for k in ("value", "gh", "gw", "gb")]
        lines.append(f"| {m} | {min(secs):.2f} | {statistics.median(secs):.2f} | "
                     f"{flops / min(secs) / 1e9:.0f} | {ratio} | {extra:.0f} | "
                     f"{extra - grad_mib:.0f} | " + " | ".join(errs) + " |")
    lines += ["", ("Relative errors are against `torch-naive` (float32 as well), in the "
                   "Frobenius norm for the gradients."), ""]
    text = "\n".join(lines)
    print(text)
    if out_path:
        Path(out_path).write_text(text)
    return runs, errors, text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["4096,1024,65536"], metavar="N,D,V",
                   help="one table per size (default: 4096,1024,65536)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--out", default=None, help="write the markdown table here")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="losskit's chunk_size (rows per block); default: 64 MiB of logits")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--peak", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.save, args.chunk_size)
        return
    if args.peak:
        peak_worker(args.peak)
        return
    sections = []
    for size in args.sizes:
        n, d, v = (int(x) for x in size.split(","))
        sections.append(run((n, d, v), args.methods, args.repeats, None, args.chunk_size))
    if args.out:
        head = ["# `linear_cross_entropy` benchmark", "",
                "Generated by `python benchmarks/linear_ce.py " + " ".join(
                    a for a in (argv if argv is not None else sys.argv[1:])) + "`.", ""]
        Path(args.out).write_text("\n".join(head + [text for _, _, text in sections]))


if __name__ == "__main__":
    main()
