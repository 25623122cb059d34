"""Benchmark: losskit under ``jax.jit`` against Optax's losses (CPU, float32).

One command::

    python benchmarks/jax_training.py --out benchmarks/JAX.md

Not part of the test suite. For each loss Optax also has, ``jax.jit(jax.value_and_grad(f))``
with ``f`` the losskit loss and ``f`` the Optax loss (mean over the batch), inputs already
on the device, ``block_until_ready``; calls interleaved (repeat r runs both, the order
alternating), medians of ``--repeats`` after two warm-up calls (compilation), and the
ratio of the fastest calls (``min``: the least disturbed by other work on the host, as
``timeit`` advises). Memory: XLA's temporary buffer size of each compiled function
(``compiled.memory_analysis()``).

The last column times losskit's call once more with its deferred value checks left out
(labels in range, probabilities in [0, 1], +-1 targets: under tracing a check that cannot
raise makes the result NaN instead, losskit.core.validation), compiled from the same
function with ``defer_invalid`` replaced by a no-op for the trace: what those checks, which
Optax does not make, cost. A measurement only: losskit has no switch that drops them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import losskit as lk  # noqa: E402
import losskit.core.validation as validation  # noqa: E402


def cases(quick: bool):
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    rows = 1024 if quick else 4096
    big = 1_000_000 if quick else 10_000_000
    z = jax.random.normal(k1, (rows, 1000))
    y = jax.random.randint(k2, (rows,), 0, 1000)
    t = jax.nn.softmax(jax.random.normal(k3, (rows, 1000)))
    zb = jax.random.normal(k1, (big,))
    tb = (jax.random.uniform(k2, (big,)) > 0.5).astype(jnp.float32)
    tr = jax.random.normal(k3, (big,))
    yield ("softmax_ce labels", (rows, 1000), lambda z: lk.softmax_cross_entropy(z, y),
           lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean(), z)
    yield ("softmax_ce probabilities", (rows, 1000), lambda z: lk.softmax_cross_entropy(z, t),
           lambda z: optax.softmax_cross_entropy(z, t).mean(), z)
    yield ("sigmoid_bce", (big,), lambda z: lk.sigmoid_binary_cross_entropy(z, tb),
           lambda z: optax.sigmoid_binary_cross_entropy(z, tb).mean(), zb)
    yield ("mse (optax l2_loss x 2)", (big,), lambda z: lk.mse(z, tr),
           lambda z: (2 * optax.l2_loss(z, tr)).mean(), zb)
    yield ("huber", (big,), lambda z: lk.huber(z, tr), lambda z: optax.huber_loss(z, tr).mean(),
           zb)
    yield ("log_cosh", (big,), lambda z: lk.log_cosh(z, tr),
           lambda z: optax.log_cosh(z, tr).mean(), zb)
    yield ("sigmoid_focal", (big,), lambda z: lk.sigmoid_focal_loss(z, tb),
           lambda z: optax.losses.sigmoid_focal_loss(z, tb, alpha=0.25).mean(), zb)
    yield ("hinge", (big,), lambda z: lk.hinge(z, 2 * tb - 1),
           lambda z: optax.hinge_loss(z, 2 * tb - 1).mean(), zb)
    yield ("poly_loss", (rows, 1000), lambda z: lk.poly_loss(z, y),
           lambda z: optax.losses.poly_loss_cross_entropy(z, jax.nn.one_hot(y, 1000), epsilon=1.0).mean(), z)
    yield ("softmax_kl (T=1)", (rows, 1000),
           lambda z: lk.softmax_kl_divergence(z, z * 0.5, reduction="batchmean"),
           lambda z: optax.kl_divergence(jax.nn.log_softmax(z),
                                         jax.nn.softmax(z * 0.5)).mean(), z)


def compiled_vg(f, x):
    fn = jax.jit(jax.value_and_grad(f))
    compiled = fn.lower(x).compile()
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    return compiled, temp


def compiled_without_checks(f, x):
    """``f`` compiled with the deferred value checks left out of its trace."""
    real = validation.defer_invalid
    validation.defer_invalid = lambda invalid: None
    try:
        return compiled_vg(f, x)[0]
    finally:
        validation.defer_invalid = real


def measure(fns, x, repeats):
    """Each of ``fns`` timed ``repeats`` times, interleaved (the order alternating)."""
    for _ in range(2):
        for fn in fns:
            jax.block_until_ready(fn(x))
    times = [[] for _ in fns]
    for r in range(repeats):
        order = list(zip(fns, times))
        for fn, ts in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            ts.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--cases", help="comma-separated case names (the first word of each), "
                                    "e.g. log_cosh,hinge; default: all")
    args = ap.parse_args(argv)
    wanted = set(args.cases.split(",")) if args.cases else None
    lines = ["| case | losskit | optax | losskit / optax | fastest calls | XLA temp MiB "
             "(losskit / optax) | checks left out |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, shape, ours, theirs, x in cases(args.quick):
        if wanted is not None and name.split()[0] not in wanted:
            continue
        fa, ma = compiled_vg(ours, x)
        fb, mb = compiled_vg(theirs, x)
        va, vb = fa(x)[0], fb(x)[0]
        ok = bool(jnp.allclose(va, vb, rtol=1e-4, atol=1e-6))
        fc = compiled_without_checks(ours, x)
        sa, sb, sc = measure((fa, fb, fc), x, args.repeats)
        ta, tb, tc = (statistics.median(t) for t in (sa, sb, sc))
        mem = "n/a" if ma is None else f"{ma / 2**20:.0f} / {mb / 2**20:.0f}"
        line = (f"| {name} {shape} | {ta * 1e3:.2f} ms | {tb * 1e3:.2f} ms | {ta / tb:.2f} | "
                f"{min(sa) / min(sb):.2f} | {mem} | {tc / tb:.2f} |"
                + ("" if ok else " VALUES DIFFER |"))
        print(line, flush=True)
        lines.append(line)
    if args.out:
        Path(args.out).write_text(
            "# losskit under jax.jit against Optax (CPU, float32, value and gradient)\n\n"
            f"`python benchmarks/jax_training.py --repeats {args.repeats}`, jax "
            f"{jax.__version__}, optax {optax.__version__}, medians; beside them the ratio "
            "of the fastest calls, and in the last column losskit's median with its deferred "
            "value checks left out (a measurement only), over Optax's.\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
