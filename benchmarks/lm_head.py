"""Benchmark: the losses fused with the LM head against Liger-Kernel's chunked PyTorch path.

One training step of an output head (value and the gradients of the hidden states, the
weight and the bias), float32, on the CPU, for

* ``dpo``: ``lk.linear_preference_loss(hidden, weight, targets, bias, ref_hidden, ref_weight)``
  (DPO with a reference model, sums of log-probabilities, no NLL term) against Liger's
  ``LigerFusedLinearDPOLoss(use_ref_model=True, compiled=False)`` (its default
  ``chunk_size=1``: one pair per chunk); the hidden states are ``(2B, T, d)``;
* ``jsd``: ``lk.linear_generalized_jsd(student_hidden, student_weight, teacher_hidden,
  teacher_weight, targets, student_bias)`` against ``LigerFusedLinearJSDLoss(compiled=False)``
  (its default ``chunk_size=1024`` rows); B x T tokens.

Contenders: ``losskit-numpy`` (NumPy arrays), ``losskit-torch`` (the same call on tensors
that require grad, ``.backward()``), ``liger`` (the Liger module on the same tensors,
``.backward()``). Liger-Kernel's ``chunked_loss`` package is pure PyTorch; it is loaded on its
own, without the Triton kernels of the rest of the package: install it with
``pip install --no-deps liger-kernel==0.8.5`` (or pass ``--liger-src DIR``, the directory
that holds ``liger_kernel/``).

The floor: the matrix products every exact method needs, N x d x V multiply-adds each
(three for the trained head: logits, hidden gradient, weight gradient; one for the
reference or teacher head), timed at the best float32 matrix-product rate measured in the
same run (``benchmarks/linear_ce.py``'s probe). Peak memory as in ``linear_ce.py``: VmHWM
of a fresh subprocess, reset after the inputs are loaded, minus the resident size before
the call; "beyond gradients" subtracts the three returned gradients.

Usage::

    python benchmarks/lm_head.py --out benchmarks/LM_HEAD.md
    python benchmarks/lm_head.py --loss dpo --shapes 2,256,1024,16384 --repeats 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from linear_ce import (_cpu, _load, _rel, _reset_peak, _status,  # noqa: E402
                       _versions, peak_gflops)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("losskit-numpy", "losskit-torch", "liger")
#: (B, T, d, V): B pairs for DPO, B sequences for JSD
SHAPES = {"dpo": ["2,256,1024,16384", "2,512,1024,16384", "4,256,1024,16384",
                  "2,256,1024,32768", "2,512,1024,32768", "4,512,1024,32768"],
          "jsd": ["4,256,1024,16384", "4,512,1024,32768"]}


# ---------------------------------------------------------------------------- worker side
def _liger_modules(src):
    """Liger-Kernel's ``chunked_loss`` package without the package's own ``__init__``
    (which loads the Triton kernels)."""
    if "liger_kernel" not in sys.modules:
        if src is None:
            spec = importlib.util.find_spec("liger_kernel")
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError("Liger-Kernel is not installed: pip install --no-deps "
                                   "liger-kernel==0.8.5, or pass --liger-src")
            path = list(spec.submodule_search_locations)
        else:
            path = [str(Path(src) / "liger_kernel")]
        pkg = types.ModuleType("liger_kernel")
        pkg.__path__ = path
        sys.modules["liger_kernel"] = pkg
    from liger_kernel.chunked_loss.dpo_loss import LigerFusedLinearDPOLoss
    from liger_kernel.chunked_loss.jsd_loss import LigerFusedLinearJSDLoss

    return LigerFusedLinearDPOLoss, LigerFusedLinearJSDLoss


def _step(loss, method, a, liger):
    """One value and the three gradients of the trained head (NumPy arrays after timing)."""
    if method == "losskit-numpy":
        import losskit as lk

        if loss == "dpo":
            return lk.linear_preference_loss.value_and_grad(
                a["h"], a["W"], a["y"], a["b"], a["rh"], a["rW"], wrt="all")
        return lk.linear_generalized_jsd.value_and_grad(
            a["h"], a["W"], a["th"], a["tW"], a["y"], a["b"], wrt="all")
    import torch

    h = a["h"].detach().requires_grad_(True)
    W = a["W"].detach().requires_grad_(True)
    b = a["b"].detach().requires_grad_(True)
    if method == "losskit-torch":
        import losskit as lk

        if loss == "dpo":
            v = lk.linear_preference_loss(h, W, a["y"], b, a["rh"], a["rW"])
        else:
            v = lk.linear_generalized_jsd(h, W, a["th"], a["tW"], a["y"], b)
    elif loss == "dpo":
        v, _ = liger[0](compiled=False, use_ref_model=True)(W, h, a["y"], b, a["rh"], a["rW"])
    else:
        v = liger[1](compiled=False)(h, W, a["th"], a["tW"], a["y"], b)
    v.backward()
    with torch.no_grad():
        return v.detach(), (h.grad, W.grad, b.grad)


def worker(loss, method, data, save, liger_src):
    sys.path.insert(0, str(ROOT / "src"))
    names = ("h", "W", "b", "y", "rh", "rW") if loss == "dpo" else ("h", "W", "b", "y", "th",
                                                                     "tW")
    a = {k: np.load(data / f"{k}.npy") for k in names}
    liger = None
    if method != "losskit-numpy":
        import torch

        torch.set_grad_enabled(True)
        a = {k: torch.from_numpy(v) for k, v in a.items()}
        if method == "liger":
            liger = _liger_modules(liger_src)
    # warm-up on a small problem: loads the libraries, starts their thread pools; the
    # last tokens, which are completion (the first quarter of each sequence is prompt,
    # whose rows a contender may skip: a warm-up of prompt only would warm nothing)
    if loss == "dpo":  # one pair of 8 tokens
        half = a["h"].shape[0] // 2
        small = {k: (v[[0, half], -8:] if k in ("h", "y", "rh") else v)
                 for k, v in a.items()}
    else:  # 64 tokens
        small = {k: (v[-64:] if k in ("h", "y", "th") else v) for k, v in a.items()}
    _step(loss, method, small, liger)
    import gc

    gc.collect()
    exact = _reset_peak()
    base = _status("VmRSS")
    t0 = time.perf_counter()
    value, grads = _step(loss, method, a, liger)
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    out = [np.asarray(o.numpy() if hasattr(o, "numpy") else o) for o in (value, *grads)]
    if save is not None:
        for k, o in zip(("value", "gh", "gw", "gb"), out):
            np.save(save / f"{method}-{k}.npy", o)
    print(json.dumps({"method": method, "seconds": seconds, "extra_mib": peak - base,
                      "peak_reset": exact, "value": float(out[0])}))


# ---------------------------------------------------------------------------- driver
def _inputs(loss, B, T, d, V, data, seed=0):
    rng = np.random.default_rng(seed)
    S = 2 * B if loss == "dpo" else B

    def hidden():
        return rng.standard_normal((S, T, d), dtype=np.float32)

    def weight():  # nn.Linear-like scale: logits of standard deviation about 1
        return rng.standard_normal((V, d), dtype=np.float32) / np.float32(np.sqrt(d))

    y = rng.integers(0, V, size=(S, T))
    y[:, : T // 4] = -100  # the prompt
    arrays = {"h": hidden(), "W": weight(), "y": y,
              "b": rng.standard_normal(V, dtype=np.float32) * np.float32(0.1)}
    if loss == "dpo":
        arrays.update(rh=hidden(), rW=weight())
    else:  # Liger's distillation modules take (tokens, d) and (tokens,)
        arrays.update(th=hidden(), tW=weight())
        for k in ("h", "th"):
            arrays[k] = arrays[k].reshape(S * T, d)
        arrays["y"] = arrays["y"].reshape(S * T)
    for k, v in arrays.items():
        np.save(data / f"{k}.npy", v)


def run(loss, shape, methods, repeats, liger_src):
    B, T, d, V = shape
    S = 2 * B if loss == "dpo" else B
    N = S * T
    grad_mib = (N * d + V * d + V) * 4 / 2**20
    runs = {m: [] for m in methods}
    load_before = _load()
    before = peak_gflops()
    errors = {}
    with tempfile.TemporaryDirectory(prefix="lm-head-bench-") as tmp:
        data = Path(tmp)
        _inputs(loss, B, T, d, V, data)
        for rep in range(repeats):
            for m in methods:
                cmd = [sys.executable, __file__, "--worker", m, "--loss", loss,
                       "--data", str(data)]
                if liger_src:
                    cmd += ["--liger-src", str(liger_src)]
                if rep == 0:
                    cmd += ["--save", str(data)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"{m} failed:\n{proc.stderr}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[m].append(res)
                print(f"[{rep + 1}/{repeats}] {loss} {shape} {m:14s} {res['seconds']:7.2f} s "
                      f" +{res['extra_mib']:7.1f} MiB  (load {_load()})", flush=True)
        if "liger" in methods:
            ref = {k: np.load(data / f"liger-{k}.npy") for k in ("value", "gh", "gw", "gb")}
            for m in methods:
                errors[m] = {k: _rel(np.load(data / f"{m}-{k}.npy"), ref[k])
                             for k in ("value", "gh", "gw", "gb")}
    after = peak_gflops()
    rate = max(max(before.values()), max(after.values()))
    flops = 2.0 * N * d * V * 4  # three products of the trained head, one of the other
    floor = flops / rate / 1e9
    liger_best = min(r["seconds"] for r in runs["liger"]) if "liger" in runs else None
    liger_mem = max(r["extra_mib"] for r in runs["liger"]) - grad_mib if liger_best else None
    lines = [f"### {loss}: B = {B}, T = {T}, d = {d}, V = {V} ({N} tokens)", "",
             f"- floor: four {N} x {d} x {V} products, {flops / 1e12:.2f} TFLOP at "
             f"{rate:.0f} GFLOP/s (best rate measured in this run) = {floor:.2f} s; "
             f"gradients {grad_mib:.0f} MiB; logits of the whole batch would be "
             f"{N * V * 4 / 2**20:.0f} MiB",
             f"- load average before: {load_before}; after: {_load()}", "",
             "| contender | best s | median s | x floor | vs liger | peak extra MiB "
             "| beyond gradients MiB | vs liger's | rel. err value | rel. err d hidden "
             "| rel. err d weight | rel. err d bias |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        secs = [r["seconds"] for r in runs[m]]
        extra = max(r["extra_mib"] for r in runs[m])
        beyond = extra - grad_mib
        err = errors.get(m, {})
        errs = [f"{err[k]:.1e}" if k in err else "n/a" for k in ("value", "gh", "gw", "gb")]
        vs = f"{min(secs) / liger_best:.2f}x" if liger_best else "n/a"
        vs_mem = (f"{max(beyond, 0.0) / liger_mem:.2f}x" if liger_mem and liger_mem > 0
                  else "n/a")
        lines.append(f"| {m} | {min(secs):.2f} | {statistics.median(secs):.2f} | "
                     f"{min(secs) / floor:.2f} | {vs} | {extra:.0f} | {beyond:.0f} | {vs_mem} "
                     "| " + " | ".join(errs) + " |")
    lines.append("")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loss", nargs="+", default=["dpo", "jsd"], choices=("dpo", "jsd"))
    p.add_argument("--shapes", nargs="+", default=None, metavar="B,T,D,V",
                   help="default: the issue's grid for each loss")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--liger-src", default=None,
                   help="directory holding liger_kernel/ (default: the installed package)")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--save", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.loss[0], args.worker, args.data, args.save, args.liger_src)
        return
    sections = []
    for loss in args.loss:
        for shape in args.shapes or SHAPES[loss]:
            sections.append(run(loss, tuple(int(x) for x in shape.split(",")), args.methods,
                                args.repeats, args.liger_src))
    if args.out:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--liger-src" in given:  # a local path: not part of the recipe
            i = given.index("--liger-src")
            del given[i:i + 2]
        argv_text = " ".join(a for a in given if not a.startswith("--liger-src="))
        head = ["# LM-head losses against Liger-Kernel's chunked path", "",
                f"Generated by `python benchmarks/lm_head.py {argv_text}` (Liger-Kernel 0.8.5's "
                "`chunked_loss`, `compiled=False`).", "",
                f"- machine: {_cpu()}; {_versions()}", ""]
        Path(args.out).write_text("\n".join(head + sections))


if __name__ == "__main__":
    main()
