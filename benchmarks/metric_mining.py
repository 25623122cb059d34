"""Benchmark: the in-batch metric-learning losses against pytorch-metric-learning, on the CPU.

Value and gradient with respect to the embeddings of ``batch_triplet_loss`` (mining
"all", "hard", "semihard"), ``batch_contrastive_loss``, ``multi_similarity_loss`` and
``circle_loss``: losskit on NumPy float32 (the blocked kernels of
``losskit.kernels.mining``: no N x N matrix beyond a block) against
pytorch-metric-learning's losses (and miners) on torch float32 tensors, forward +
``.backward()``, ``--threads`` (default 2) BLAS and torch threads::

    python benchmarks/metric_mining.py                 # N 4096, d 128, 512 classes of 8
    python benchmarks/metric_mining.py --n 1024 --repeats 3

Columns: median time of ``--repeats`` calls after one warm-up, and **peak extra** memory:
each contender runs once more in a fresh subprocess, where the growth of the process's
peak resident set (``ru_maxrss``) over the call is measured as the high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs``, Linux) over the resident set before
the call (inputs, imports and a warm-up call on a tiny batch happen before), so the numbers of both libraries are
measured the same way. The value of each pair is checked first (``|losskit - pml| <=
1e-3 |pml|``, float32). pml's triplet loss over all triplets enumerates them (index
triples of N x P x N entries): at N = 4096 with 8 per class that is 117M triplets, so the
"all" and "semihard" rows can be skipped with ``--no-all``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("triplet-all", "triplet-hard", "triplet-semihard", "contrastive", "multi_similarity",
         "circle")


def _inputs(n, d, per_class, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = (np.arange(n) // per_class).astype(np.int64)
    rng.shuffle(y)
    return x, y


def _contenders(case):
    """(losskit fn(x, y) -> (value, grad), pml fn(x_tensor, y_tensor) -> value)."""
    import losskit as lk
    from pytorch_metric_learning import losses, miners

    m = 0.05
    if case.startswith("triplet"):
        mining = case.split("-")[1]
        miner = {"all": None, "hard": miners.BatchHardMiner(),
                 "semihard": miners.TripletMarginMiner(margin=m, type_of_triplets="semihard")}
        miner = miner[mining]
        obj = losses.TripletMarginLoss(margin=m)

        def ours(x, y):
            return lk.batch_triplet_loss.value_and_grad(x, y, margin=m, mining=mining)
    else:
        miner = None
        obj = {"contrastive": losses.ContrastiveLoss, "multi_similarity":
               losses.MultiSimilarityLoss, "circle": losses.CircleLoss}[case]()
        loss = {"contrastive": lk.batch_contrastive_loss,
                "multi_similarity": lk.multi_similarity_loss, "circle": lk.circle_loss}[case]

        def ours(x, y):
            return loss.value_and_grad(x, y)

    def theirs(xt, yt):
        return obj(xt, yt, miner(xt, yt) if miner is not None else None)

    return ours, theirs


def _kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak():
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _kib("VmRSS")


def _run_once(lib, case, n, d, per_class):
    """One call on a fresh process: the growth of the peak RSS (MiB) and the time."""
    import torch

    torch.set_num_threads(int(os.environ.get("LOSSKIT_BENCH_THREADS", "2")))
    ours, theirs = _contenders(case)
    x, y = _inputs(n, d, per_class)
    xs, ys = _inputs(64, d, per_class, seed=1)
    if lib == "losskit":
        ours(xs, ys)
        before = _reset_peak()
        t = time.perf_counter()
        ours(x, y)
    else:
        xt0 = torch.from_numpy(xs).requires_grad_(True)
        theirs(xt0, torch.from_numpy(ys)).backward()
        xt, yt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y)
        before = _reset_peak()
        t = time.perf_counter()
        theirs(xt, yt).backward()
    t = time.perf_counter() - t
    after = _kib("VmHWM")
    return {"mib": (after - before) / 1024.0, "s": t}


def _time(case, n, d, per_class, repeats):
    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("LOSSKIT_BENCH_THREADS", "2")))
    ours, theirs = _contenders(case)
    x, y = _inputs(n, d, per_class)
    v, g = ours(x, y)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    ref = theirs(xt, torch.from_numpy(y))
    ref.backward()
    rv = float(ref.detach())
    assert abs(float(v) - rv) <= 1e-3 * abs(rv) + 1e-6, (case, float(v), rv)
    gerr = float(np.linalg.norm(g - xt.grad.numpy()) / max(np.linalg.norm(xt.grad.numpy()),
                                                             1e-30))
    times = {"losskit": [], "pml": []}
    for r in range(repeats):
        for lib in (("losskit", "pml") if r % 2 == 0 else ("pml", "losskit")):
            t = time.perf_counter()
            if lib == "losskit":
                ours(x, y)
            else:
                xt = torch.from_numpy(x).requires_grad_(True)
                theirs(xt, torch.from_numpy(y)).backward()
            times[lib].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}, gerr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-all", action="store_true",
                        help="skip the triplet rows that make pml enumerate every triplet")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of BLAS (NumPy) and of torch, for both contenders")
    parser.add_argument("--child", nargs=2, metavar=("LIB", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy and torch are imported
    os.environ["LOSSKIT_BENCH_THREADS"] = str(args.threads)
    if args.child:
        print(json.dumps(_run_once(args.child[0], args.child[1], args.n, args.d,
                                   args.per_class)))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    if args.no_all:
        cases = [c for c in cases if c not in ("triplet-all", "triplet-semihard")]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    print(f"N {args.n}, d {args.d}, {args.per_class} per class, float32, CPU, "
          f"{args.threads} thread(s) "
          f"(median of {args.repeats}; peak extra = growth of the peak RSS over one call, Linux)\n")
    print("| loss | losskit s | pml s | ratio | losskit peak MiB | pml peak MiB | grad rel. err |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        (tm, gerr) = _time(case, args.n, args.d, args.per_class, args.repeats)
        mem = {}
        for lib in ("losskit", "pml"):
            out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--d",
                                  str(args.d), "--per-class", str(args.per_class),
                                  "--threads", str(args.threads), "--child",
                                  lib, case], capture_output=True, text=True, env=env,
                                 check=True)
            mem[lib] = json.loads(out.stdout.strip().splitlines()[-1])["mib"]
        print(f"| {case} | {tm['losskit']:.4f} | {tm['pml']:.4f} | "
              f"{tm['losskit'] / tm['pml']:.2f} | {mem['losskit']:.1f} | {mem['pml']:.1f} | "
              f"{gerr:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
