"""Benchmark: value + gradient of the hot losses on the CPU, losskit vs PyTorch vs JAX.

One command::

    python benchmarks/run.py --out benchmarks/RESULTS.md

Every loss of the catalog (``lk.catalog()``) in one table, with the issue's targets, is
``benchmarks/catalog.py`` (``python benchmarks/catalog.py --out benchmarks/CATALOG.md``;
``--quick`` for a smoke run); this script stays on the hot losses, in more detail.

Not part of the test suite. What it measures, per case, in **one process** with the
contenders' calls **interleaved** (repeat r calls every contender once, in an order rotated
by r, so that a burst of load on a shared machine hits all of them alike):

==========================  =============================================================
case                        call
==========================  =============================================================
``softmax_ce``              softmax cross-entropy, float32 logits (4096, 32768), int labels,
                            mean: value and gradient
``sigmoid_bce``             sigmoid binary cross-entropy, float32 (10M,), targets 0/1, mean
``mse``                     mean squared error, float32 (10M,)
``huber``, ``sigmoid_focal``  Huber (delta 1) and sigmoid focal loss (gamma 2, alpha 0.25),
                            float32 (10M,); PyTorch's focal loss is torchvision's formula
                            written out (torchvision is not a dependency)
``ce_10``, ``nll_10``        softmax cross-entropy and NLL (of log-probabilities) with ten
                            classes, float32 (4096, 10), int labels: the fixed cost per row
``small_ce``                softmax cross-entropy (32, 10) float32 (per call, microseconds)
``small_bce``, ``small_mse``  the same (32, 10) for the elementwise losses
==========================  =============================================================

Contenders: ``losskit[numba]`` (the fused kernels of ``losskit.kernels.fast_paths`` on numba),
``losskit[numba,out=]`` (the gradient written into a preallocated array), ``losskit[numpy]``
(the same fast paths without numba), ``losskit[generic]`` (small cases only: the
Array-API pipeline every backend runs), ``plain NumPy`` (small cases only: the loss
written out in NumPy without checks or options, the bar of the NumPy engine), ``torch`` (``F.cross_entropy`` etc. on tensors
sharing the NumPy buffers, then ``.backward()``; ``torch.set_num_threads(2)``), ``jax``
(``jax.jit(jax.value_and_grad(...))`` of the Optax loss, inputs already on the device,
``block_until_ready``).

Numbers reported:

* **median and IQR** (25th-75th percentile) of ``--repeats`` timed calls (small cases:
  each sample is the mean of a batch of calls), after two warm-up calls (JIT compilation);
* **x floor**: the median over the memory-traffic floor, ``bytes moved / bandwidth``. The
  bytes are the inputs read once and the gradient written once. The bandwidth is measured
  here with ``np.copyto`` of a 256 MiB float32 array (read + write = 512 MiB moved; the
  best of one thread and of two threads each copying half, the larger is used);
* **vs torch / vs jax**: the median over that contender's median in the same run;
* **kept between calls**: the bytes losskit's gradient cache (``losskit.kernels.gradient_cache.GradientCache``)
  holds after a contender's timed calls: each call's gradient buffer is reused by the next
  call of the same shape once the caller has dropped it, as PyTorch's and JAX's device
  allocators reuse theirs; ``losskit[numba,no cache]`` (large cases) is the same call
  with the cache off, paying the page faults of a new gradient every time;
* **peak extra memory**, from a separate call after the timings (losskit: with the gradient
  cache emptied first, so the gradient is new memory, as on a first call): for NumPy-based contenders
  ``tracemalloc``'s peak over the memory traced before the call (NumPy reports its
  allocations to tracemalloc; numba's own allocations, a few KiB per thread, are not seen);
  for every contender the resident-set high-water mark (``VmHWM`` of ``/proc/self/status``,
  reset by writing 5 to ``/proc/self/clear_refs``) minus the resident size before the call.
  The gradient the call returns counts (it is extra memory); ``out=`` preallocates it.

Both allocator settings: the script runs itself twice in a subprocess, once with
``GLIBC_TUNABLES`` unset and once with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc's
malloc then asks for transparent huge pages; NumPy already does so for its own large
arrays). ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed from the
subprocesses' environment (only there). ``OMP_WAIT_POLICY=PASSIVE`` is set there too
(``--omp-wait-policy ''`` leaves it alone): PyTorch and numba each bring an OpenMP
runtime, whose idle threads otherwise spin and, on two cores that other processes also
use, stall each other's parallel regions by scheduler time slices (PyTorch's (32, 10)
cross-entropy took 15 ms instead of 0.1 ms that way here). The machine may be shared:
the load average before and after each run is reported.

Options: ``--repeats N`` (default 9), ``--quick`` (smaller arrays, for a smoke run),
``--settings default,hugetlb`` (which allocator settings), ``--cases small_ce,mse`` (some
cases only; the ids are in the table above).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"default": None, "hugetlb": "glibc.malloc.hugetlb=1"}
MiB = 1024.0 * 1024.0


# ---------------------------------------------------------------------------- measurement
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := the current resident size (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_extra(fn, traced: bool, before=None):
    """(tracemalloc peak extra MiB or None, RSS high-water extra MiB or None) of one call.

    ``before()`` runs before each measured call (losskit: empty the gradient cache, so
    that the gradient is new memory and counts, as on a first call).
    """
    import tracemalloc

    trace = None
    if traced:
        if before is not None:
            before()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        trace = (tracemalloc.get_traced_memory()[1] - base) / MiB
        tracemalloc.stop()
        del result
    rss = None
    if traced and before is not None:
        before()
    if _reset_hwm():
        before = _status_kib("VmRSS")
        result = fn()
        rss = max(0, _status_kib("VmHWM") - before) / 1024.0
        del result
    return trace, rss


def bandwidth_gbs(np) -> tuple[float, float, float]:
    """(bandwidth used, one-thread, two-thread) in GB/s of np.copyto, read + write."""
    from concurrent.futures import ThreadPoolExecutor

    n = 64 * 1024 * 1024  # 256 MiB of float32
    src = np.ones(n, dtype=np.float32)
    dst = np.zeros(n, dtype=np.float32)
    moved = 2 * src.nbytes
    half = n // 2
    pool = ThreadPoolExecutor(2)

    def two():
        list(pool.map(lambda s: np.copyto(dst[s], src[s]), [slice(0, half), slice(half, n)]))

    one_t, two_t = [], []
    for _ in range(7):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        one_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        two()
        two_t.append(time.perf_counter() - t0)
    pool.shutdown()
    one = moved / sorted(one_t)[len(one_t) // 2] / 1e9
    both = moved / sorted(two_t)[len(two_t) // 2] / 1e9
    return max(one, both), one, both


def quantiles(xs):
    xs = sorted(xs)

    def q(p):
        i = p * (len(xs) - 1)
        lo = int(i)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)

    return q(0.5), q(0.25), q(0.75)


# ---------------------------------------------------------------------------- contenders
def build_cases(quick: bool):
    import numpy as np

    rng = np.random.default_rng(0)
    n, k = (512, 8192) if quick else (4096, 32768)
    m = 1_000_000 if quick else 10_000_000
    z = rng.standard_normal((n, k), dtype=np.float32)
    y = rng.integers(0, k, size=n)
    x = rng.standard_normal(m, dtype=np.float32)
    t = (rng.random(m) > 0.5).astype(np.float32)
    r = rng.standard_normal(m, dtype=np.float32)
    z10 = rng.standard_normal((4096, 10), dtype=np.float32)
    y10 = rng.integers(0, 10, size=4096)
    lp10 = (z10 - np.log(np.exp(z10).sum(1, keepdims=True))).astype(np.float32)
    zs = rng.standard_normal((32, 10), dtype=np.float32)
    ys = rng.integers(0, 10, size=32)
    ts = (rng.random((32, 10)) > 0.5).astype(np.float32)
    return [
        {"id": "softmax_ce", "loss": "softmax_cross_entropy", "label": f"softmax CE ({n}, {k}) f32",
         "arrays": (z, y), "bytes": 2 * z.nbytes + y.nbytes, "small": False},
        {"id": "sigmoid_bce", "loss": "sigmoid_binary_cross_entropy",
         "label": f"sigmoid BCE ({m:,}) f32", "arrays": (x, t),
         "bytes": 3 * x.nbytes, "small": False},
        {"id": "mse", "loss": "mse", "label": f"MSE ({m:,}) f32", "arrays": (x, r),
         "bytes": 3 * x.nbytes, "small": False},
        {"id": "huber", "loss": "huber", "label": f"Huber ({m:,}) f32", "arrays": (x, r),
         "bytes": 3 * x.nbytes, "small": False},
        {"id": "sigmoid_focal", "loss": "sigmoid_focal_loss",
         "label": f"sigmoid focal ({m:,}) f32", "arrays": (x, t), "bytes": 3 * x.nbytes,
         "small": False},
        {"id": "ce_10", "loss": "softmax_cross_entropy", "label": "softmax CE (4096, 10) f32",
         "arrays": (z10, y10), "bytes": 2 * z10.nbytes + y10.nbytes, "small": False},
        {"id": "nll_10", "loss": "nll_loss", "label": "NLL (4096, 10) f32",
         "arrays": (lp10, y10), "bytes": 2 * z10.nbytes + y10.nbytes, "small": False},
        {"id": "small_ce", "loss": "softmax_cross_entropy", "label": "softmax CE (32, 10) f32",
         "arrays": (zs, ys), "bytes": 2 * zs.nbytes + ys.nbytes, "small": True},
        {"id": "small_bce", "loss": "sigmoid_binary_cross_entropy",
         "label": "sigmoid BCE (32, 10) f32", "arrays": (zs, ts), "bytes": 3 * zs.nbytes,
         "small": True},
        {"id": "small_mse", "loss": "mse", "label": "MSE (32, 10) f32", "arrays": (zs, ts),
         "bytes": 3 * zs.nbytes, "small": True},
    ]


def losskit_contenders(case):
    import numpy as np

    import losskit as lk
    from losskit.core import dispatch
    from losskit.kernels import fast_paths as _fast
    from losskit.kernels import gradient_cache

    loss = getattr(lk, case["loss"])
    arrays = case["arrays"]
    out = np.empty_like(arrays[0])

    cache_limit = gradient_cache.GRADIENT_CACHE.limit

    def engine(numba: bool, use_out: bool, enabled: bool = True, cache: bool = True):
        def fn():
            _fast.USE_NUMBA, dispatch.ENABLED = numba, enabled
            gradient_cache.GRADIENT_CACHE.limit = cache_limit if cache else 0
            try:
                if use_out:
                    return loss.value_and_grad(*arrays, out=out)
                return loss.value_and_grad(*arrays)
            finally:
                _fast.USE_NUMBA, dispatch.ENABLED = True, True
                gradient_cache.GRADIENT_CACHE.limit = cache_limit
        return fn

    have_numba = _fast.engine() == "numba"
    found = []
    if have_numba:
        found += [("losskit[numba]", engine(True, False)),
                  ("losskit[numba,out=]", engine(True, True))]
        if not case["small"]:
            found += [("losskit[numba,no cache]", engine(True, False, cache=False))]
    found += [("losskit[numpy]", engine(False, False))]
    if case["small"]:
        found += [("losskit[generic]", engine(False, False, enabled=False))]
    return found


def plain_numpy_contender(case):
    """Small cases: the loss written in plain NumPy (stable textbook formulas, no input
    checks, no options), the bar of the NumPy engine's small calls (numba off)."""
    import numpy as np

    if not case["small"]:
        return []
    a, b = case["arrays"]
    n = a.size
    rows = np.arange(a.shape[0])
    if case["loss"] == "softmax_cross_entropy":
        def fn():
            m = a.max(axis=1, keepdims=True)
            e = np.exp(a - m)
            s = e.sum(axis=1)
            value = (np.log(s) - (a[rows, b] - m[:, 0])).mean()
            g = e / s[:, None]
            g[rows, b] -= 1.0
            g /= a.shape[0]
            return value, g
    elif case["loss"] == "sigmoid_binary_cross_entropy":
        def fn():
            value = (np.maximum(a, 0) - a * b + np.log1p(np.exp(-np.abs(a)))).mean()
            return value, (1.0 / (1.0 + np.exp(-a)) - b) / n
    else:
        def fn():
            d = a - b
            return (d * d).mean(), d * (2.0 / n)
    return [("plain NumPy", fn)]


def torch_contender(case):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return []
    torch.set_num_threads(2)
    a, b = (torch.from_numpy(v) for v in case["arrays"])  # shares the NumPy buffers
    a.requires_grad_(True)
    if case["loss"] == "softmax_cross_entropy":
        def loss(): return F.cross_entropy(a, b)
    elif case["loss"] == "nll_loss":
        def loss(): return F.nll_loss(a, b)
    elif case["loss"] == "sigmoid_binary_cross_entropy":
        def loss(): return F.binary_cross_entropy_with_logits(a, b)
    elif case["loss"] == "huber":
        def loss(): return F.huber_loss(a, b, delta=1.0)
    elif case["loss"] == "sigmoid_focal_loss":
        def loss():  # torchvision's formula (gamma 2, alpha 0.25), written out
            p = torch.sigmoid(a)
            ce = F.binary_cross_entropy_with_logits(a, b, reduction="none")
            p_t = p * b + (1 - p) * (1 - b)
            alpha_t = 0.25 * b + 0.75 * (1 - b)
            return (alpha_t * ce * (1 - p_t) ** 2).mean()
    else:
        def loss(): return F.mse_loss(a, b)

    def fn():
        a.grad = None
        v = loss()
        v.backward()
        return v.detach(), a.grad

    return [("torch", fn)]


def jax_contender(case):
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return []
    if case["loss"] == "nll_loss":
        return []  # (none in Optax)
    if case["loss"] == "softmax_cross_entropy":
        def loss(a, b): return optax.losses.softmax_cross_entropy_with_integer_labels(a, b).mean()
    elif case["loss"] == "sigmoid_binary_cross_entropy":
        def loss(a, b): return optax.losses.sigmoid_binary_cross_entropy(a, b).mean()
    elif case["loss"] == "huber":
        def loss(a, b): return optax.losses.huber_loss(a, b, delta=1.0).mean()
    elif case["loss"] == "sigmoid_focal_loss":
        def loss(a, b): return optax.losses.sigmoid_focal_loss(a, b, alpha=0.25, gamma=2.0).mean()
    else:
        def loss(a, b): return optax.losses.squared_error(a, b).mean()
    f = jax.jit(jax.value_and_grad(loss))
    a, b = (jax.device_put(jnp.asarray(v)) for v in case["arrays"])

    def fn():
        return jax.block_until_ready(f(a, b))

    return [("jax", fn)]


# ---------------------------------------------------------------------------- child process
def child(args):
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))  # the working tree's losskit, installed or not
    import losskit  # noqa: F401
    from losskit.kernels import fast_paths as _fast
    from losskit.kernels import gradient_cache

    info = {
        "setting": args.setting,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "load_before": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "engine": _fast.engine(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    for mod in ("numba", "torch", "jax", "optax"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    bw, bw1, bw2 = bandwidth_gbs(np)
    info.update(bandwidth_gbs=bw, bandwidth_1t=bw1, bandwidth_2t=bw2)
    cases = build_cases(args.quick)
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if c["id"] in wanted]
    results = []
    for case in cases:
        contenders = (losskit_contenders(case) + plain_numpy_contender(case)
                      + torch_contender(case) + jax_contender(case))
        inner = 200 if case["small"] else 1
        for _, fn in contenders:  # warm up: compilation, caches, first-touch pages
            fn()
            fn()
        times = {name: [] for name, _ in contenders}
        for r in range(args.repeats):
            order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
            for name, fn in order:
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                times[name].append((time.perf_counter() - t0) / inner)
        floor = case["bytes"] / (bw * 1e9)
        rows = []
        for name, fn in contenders:
            med, q1, q3 = quantiles(times[name])
            ours = name.startswith("losskit")
            kept = None
            if ours:  # what the gradient cache holds after two calls of this contender
                gradient_cache.clear_gradient_cache()
                fn()
                fn()
                kept = gradient_cache.GRADIENT_CACHE.nbytes / MiB
            trace, rss = peak_extra(fn, traced=ours, before=gradient_cache.clear_gradient_cache)
            rows.append({"name": name, "median": med, "q1": q1, "q3": q3, "trace_mib": trace,
                         "rss_mib": rss, "kept_mib": kept})
        gradient_cache.clear_gradient_cache()
        results.append({"id": case["id"], "label": case["label"], "small": case["small"],
                        "bytes": case["bytes"], "floor": floor,
                        "grad_mib": case["arrays"][0].nbytes / MiB, "rows": rows})
        print(f"  [{args.setting}] {case['label']}: "
              + ", ".join(f"{r['name']} {r['median'] * 1e3:.3g} ms" for r in rows), flush=True)
    info["load_after"] = os.getloadavg()
    Path(args.json).write_text(json.dumps({"info": info, "results": results}))


# ---------------------------------------------------------------------------- report
def _fmt_time(s, small):
    return f"{s * 1e6:.1f} us" if small else f"{s * 1e3:.1f} ms"


def _fmt_mem(v):
    return "n/a" if v is None else f"{v:.1f}"


def _fmt_grad(v):
    """A gradient's MiB: whole above 10, else two decimals (a (4096, 10) one is 0.16)."""
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}"


def report(runs) -> str:
    lines = ["# losskit benchmark: loss value + gradient on the CPU", ""]
    first = runs[0]["info"]
    lines += [
        f"Generated by `python benchmarks/run.py` on {time.strftime('%Y-%m-%d %H:%M')}: "
        f"{first['cpus']} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {first['python']}, NumPy {first['numpy']}, numba {first['numba']}, "
        f"PyTorch {first['torch']}, JAX {first['jax']}, Optax {first['optax']}; losskit "
        f"fast-path engine: {first['engine']}; `OMP_WAIT_POLICY={first['omp_wait_policy']}`.",
        "",
        "Method (details in the docstring of `benchmarks/run.py`): all contenders in one "
        "process, calls interleaved; median and IQR of the timed calls; *x floor* = median / "
        "(bytes read and written once / the `np.copyto` bandwidth measured in the same "
        "process); *vs torch*, *vs jax* = median / their median in the same run; peak extra "
        "memory in MiB from `tracemalloc` (NumPy allocations) and from the resident-set "
        "high-water mark (all), the returned gradient included, measured on a call with "
        "losskit's gradient cache emptied first (as on a first call); *kept between calls*: "
        "what that cache holds after the timed calls (the previous gradient's buffer, reused "
        "once the caller has dropped it; `losskit[numba,no cache]` runs without it).",
        "",
    ]
    for run in runs:
        info = run["info"]
        lines += [
            f"## Allocator: {info['setting']} (`GLIBC_TUNABLES={info['glibc_tunables']}`)",
            "",
            f"Bandwidth {info['bandwidth_gbs']:.1f} GB/s (copy, read + write; one thread "
            f"{info['bandwidth_1t']:.1f}, two threads {info['bandwidth_2t']:.1f}). Load "
            f"average before {info['load_before'][0]:.2f}, after {info['load_after'][0]:.2f} "
            f"(a shared machine: other processes compete for the {info['cpus']} cores).",
            "",
            "| case | contender | median | IQR | x floor | vs torch | vs jax | "
            "peak extra MiB (tracemalloc / RSS) | kept between calls MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for res in run["results"]:
            by = {r["name"]: r for r in res["rows"]}
            for r in res["rows"]:
                small = res["small"]
                iqr = f"{_fmt_time(r['q1'], small)} - {_fmt_time(r['q3'], small)}"
                floor = "" if small else f"{r['median'] / res['floor']:.2f}"
                vs_t = f"{r['median'] / by['torch']['median']:.2f}" if "torch" in by else ""
                vs_j = f"{r['median'] / by['jax']['median']:.2f}" if "jax" in by else ""
                lines.append(
                    f"| {res['label']} | {r['name']} | {_fmt_time(r['median'], small)} | "
                    f"{iqr} | {floor} | {vs_t} | {vs_j} | "
                    f"{_fmt_mem(r['trace_mib'])} / {_fmt_mem(r['rss_mib'])} | "
                    f"{_fmt_mem(r.get('kept_mib'))} |")
            if not res["small"]:
                lines.append(f"| | *floor* | {_fmt_time(res['floor'], False)} | | 1.00 | | | "
                             f"gradient: {_fmt_grad(res['grad_mib'])} | |")
        lines.append("")
        lines += targets(run)
    return "\n".join(lines) + "\n"


def targets(run):
    """The issue's targets for the numba engine (the NumPy engine's numbers are above)."""
    lines = ["Targets (losskit[numba]; peak extra from tracemalloc, RSS in brackets):", "",
             "| case | <= 0.5x torch | <= 0.8x jax | <= 3x floor | peak extra <= gradient | "
             "0 with out= | small <= 10 us | numba off: small <= plain NumPy |",
             "|---|---|---|---|---|---|---|---|"]

    def mark(ok, text):
        return ("yes " if ok else "**no** ") + text

    for res in run["results"]:
        by = {r["name"]: r for r in res["rows"]}
        me = by.get("losskit[numba]")
        if me is None:
            continue
        cells = []
        for other, limit in (("torch", 0.5), ("jax", 0.8)):
            if other in by:
                ratio = me["median"] / by[other]["median"]
                cells.append(mark(ratio <= limit, f"{ratio:.2f}"))
            else:
                cells.append("n/a")
        if res["small"]:
            cells += ["", "", ""]
            cells.append(mark(me["median"] <= 10e-6, f"{me['median'] * 1e6:.1f} us"))
            np_engine, plain = by.get("losskit[numpy]"), by.get("plain NumPy")
            if np_engine is not None and plain is not None:
                ratio = np_engine["median"] / plain["median"]
                cells.append(mark(ratio <= 1.0, f"{np_engine['median'] * 1e6:.1f} vs "
                                                f"{plain['median'] * 1e6:.1f} us ({ratio:.2f}x)"))
            else:
                cells.append("n/a")
        else:
            f = me["median"] / res["floor"]
            cells.append(mark(f <= 3.0, f"{f:.2f}"))
            extra = me["trace_mib"]
            # slack: the call's own Python objects, 1% of the gradient or 64 KiB (as in
            # benchmarks/catalog.py)
            slack = max(0.01 * res["grad_mib"], 64 / 1024)
            cells.append(mark(extra is not None and extra <= res["grad_mib"] + slack,
                              f"{_fmt_mem(extra)} ({_fmt_mem(me['rss_mib'])}) vs "
                              f"{_fmt_grad(res['grad_mib'])}"))
            o = by.get("losskit[numba,out=]")
            if o is not None:
                cells.append(mark(o["trace_mib"] is not None and o["trace_mib"] < 1.0,
                                  f"{_fmt_mem(o['trace_mib'])} ({_fmt_mem(o['rss_mib'])})"))
            else:
                cells.append("n/a")
            cells += ["", ""]
        lines.append(f"| {res['label']} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--settings", default="default,hugetlb")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the subprocesses ('' leaves it unset)")
    parser.add_argument("--cases", default="",
                        help="comma-separated case ids (default: all), e.g. small_ce,mse")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            env = dict(os.environ)
            for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
                env.pop(key, None)
            if args.omp_wait_policy:
                env["OMP_WAIT_POLICY"] = args.omp_wait_policy
            if SETTINGS[setting] is None:
                env.pop("GLIBC_TUNABLES", None)
            else:
                env["GLIBC_TUNABLES"] = SETTINGS[setting]
            path = os.path.join(tmp, f"{setting}.json")
            cmd = [sys.executable, __file__, "--child", "--setting", setting, "--json", path,
                   "--repeats", str(args.repeats), "--cases", args.cases] + (
                       ["--quick"] if args.quick else [])
            print(f"running {setting} ...", flush=True)
            subprocess.run(cmd, env=env, check=True)
            runs.append(json.loads(Path(path).read_text()))
    text = report(runs)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
