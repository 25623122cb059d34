"""Benchmark: losskit inside a PyTorch training step against PyTorch's own losses (CPU).

One command::

    python benchmarks/torch_training.py --out benchmarks/TORCH.md

Not part of the test suite. For each case, in one process, float32 tensors, 2 threads:
``loss(prediction_requiring_grad, target).backward()`` with losskit (``lk.NAME`` on the
tensors: the ``losskit::value_and_grad`` operator and its closed-form backward) and with
the native PyTorch loss (``F.cross_entropy`` etc.; torchvision's box losses and focal loss
written out in torch, since torchvision cannot be installed beside torch 2.13), calls
interleaved (repeat r runs both contenders, the order alternating), medians of
``--repeats`` after two warm-up calls. Peak extra memory: the resident-set high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs``) during one call minus the resident
size before it; the gradient counts (it is new memory for both).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import losskit as lk  # noqa: E402
from run import _reset_hwm, _status_kib  # noqa: E402

HOT = {"softmax_ce_1000", "softmax_ce_32768", "sigmoid_bce", "mse", "huber", "sigmoid_focal"}
TARGET_HOT, TARGET_OTHER = 0.5, 1.0


def _focal(z, t):  # torchvision.ops.sigmoid_focal_loss (gamma 2, alpha 0.25), mean
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    return ((0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2).mean()


def _giou(p, t):  # torchvision.ops.generalized_box_iou_loss, written out, mean
    x1, y1, x2, y2 = p.unbind(-1)
    a1, b1, a2, b2 = t.unbind(-1)
    inter = ((torch.min(x2, a2) - torch.max(x1, a1)).clamp(min=0)
             * (torch.min(y2, b2) - torch.max(y1, b1)).clamp(min=0))
    union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
    iou = inter / (union + 1e-7)
    hull = (torch.max(x2, a2) - torch.min(x1, a1)) * (torch.max(y2, b2) - torch.min(y1, b1))
    return (1 - iou + (hull - union) / (hull + 1e-7)).mean()


def cases(quick: bool):
    g = torch.Generator().manual_seed(0)
    big = 1_000_000 if quick else 10_000_000
    rows = 1024 if quick else 4096

    def randn(*s):
        return torch.randn(*s, generator=g)

    def rand(*s):
        return torch.rand(*s, generator=g)

    def boxes(n):
        xy = rand(n, 2) * 100
        wh = rand(n, 2) * 50 + 1
        return torch.cat([xy, xy + wh], -1)

    yield ("softmax_ce_1000", lk.softmax_cross_entropy, F.cross_entropy,
           randn(rows, 1000), torch.randint(0, 1000, (rows,), generator=g), {})
    if not quick:
        yield ("softmax_ce_32768", lk.softmax_cross_entropy, F.cross_entropy,
               randn(4096, 32768), torch.randint(0, 32768, (4096,), generator=g), {})
    yield ("sigmoid_bce", lk.sigmoid_binary_cross_entropy, F.binary_cross_entropy_with_logits,
           randn(big), (rand(big) > 0.5).float(), {})
    yield ("mse", lk.mse, F.mse_loss, randn(big), randn(big), {})
    yield ("huber", lk.huber, F.huber_loss, randn(big), randn(big), {})
    yield ("sigmoid_focal", lk.sigmoid_focal_loss, _focal, randn(big),
           (rand(big) > 0.5).float(), {})
    yield ("smooth_l1", lk.smooth_l1, F.smooth_l1_loss, randn(big), randn(big), {})
    logp = torch.log_softmax(randn(rows, 1000), -1)
    yield ("nll_loss", lk.nll_loss, F.nll_loss, logp,
           torch.randint(0, 1000, (rows,), generator=g), {})
    yield ("kl_divergence", lk.kl_divergence,
           lambda a, b: F.kl_div(a, b, reduction="batchmean"), logp,
           torch.softmax(randn(rows, 1000), -1), {})
    yield ("poisson_nll", lk.poisson_nll, F.poisson_nll_loss, randn(big),
           torch.poisson(rand(big) * 3, generator=g), {})
    yield ("multiclass_hinge", lk.multiclass_hinge,
           lambda a, b: F.multi_margin_loss(a, b) * a.shape[1], randn(rows, 1000),
           torch.randint(0, 1000, (rows,), generator=g), {})
    emb = 65536 if not quick else 8192
    yield ("triplet_margin", lk.triplet_margin, F.triplet_margin_loss, randn(emb, 128),
           (randn(emb, 128), randn(emb, 128)), {"all": True})
    yield ("margin_ranking", lk.margin_ranking, F.margin_ranking_loss, randn(big),
           (randn(big), torch.sign(randn(big))), {"all": True})
    yield ("cosine_embedding", lk.cosine_embedding, F.cosine_embedding_loss, randn(emb, 128),
           (randn(emb, 128), torch.sign(randn(emb))), {"all": True})
    yield ("giou_loss", lk.giou_loss, _giou, boxes(big // 10), boxes(big // 10), {})


def contenders(name, ours_loss, theirs, pred, target, flags):
    others = target if isinstance(target, tuple) else (target,)
    every = flags.get("all", False)  # every float input is differentiable (metric losses)

    def leaves():
        p = pred.clone().requires_grad_()
        rest = tuple(o.clone().requires_grad_() if every and o.is_floating_point()
                     and o.dim() == pred.dim() else o for o in others)
        return p, rest

    p1, r1 = leaves()
    p2, r2 = leaves()

    def ours():
        p1.grad = None
        v = ours_loss(p1, *r1)
        v.backward()
        return v.detach(), p1.grad

    def native():
        p2.grad = None
        v = theirs(p2, *r2)
        v.backward()
        return v.detach(), p2.grad

    return ours, native


def measure(fn_a, fn_b, repeats):
    for _ in range(2):
        fn_a(), fn_b()
    ta, tb = [], []
    for r in range(repeats):
        order = ((fn_a, ta), (fn_b, tb)) if r % 2 == 0 else ((fn_b, tb), (fn_a, ta))
        for fn, times in order:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def peak(fn):
    import gc

    gc.collect()
    if not _reset_hwm():
        return None
    before = _status_kib("VmRSS")
    result = fn()
    extra = max(0, _status_kib("VmHWM") - before) / 1024.0
    del result
    return extra


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    lines = ["| case | losskit | torch | losskit / torch | target | peak extra MiB (losskit / torch) |",
             "|---|---:|---:|---:|---:|---|"]
    wanted = set(args.cases.split(",")) if args.cases else None
    for name, ours_loss, theirs, pred, target, flags in cases(args.quick):
        if wanted is not None and name not in wanted:
            continue
        ours, native = contenders(name, ours_loss, theirs, pred, target, flags)
        va, ga = ours()
        vb, gb = native()
        ok = np.allclose(va.numpy(), vb.numpy(), rtol=1e-3, atol=1e-5) and np.allclose(
            ga.numpy(), gb.numpy(), rtol=1e-3, atol=1e-7)
        del va, ga, vb, gb
        ta, tb = measure(ours, native, args.repeats)
        ma, mb = peak(ours), peak(native)
        target = TARGET_HOT if name in HOT else TARGET_OTHER
        mem = "n/a" if ma is None else f"{ma:.0f} / {mb:.0f}"
        line = (f"| {name} {tuple(pred.shape)} | {ta * 1e3:.2f} ms | {tb * 1e3:.2f} ms | "
                f"{ta / tb:.2f} | <= {target} | {mem} |" + ("" if ok else " VALUES DIFFER |"))
        print(line, flush=True)
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(
            "# losskit inside PyTorch training (CPU, float32, forward + backward)\n\n"
            f"`python benchmarks/torch_training.py{' --quick' if args.quick else ''} "
            f"--repeats {args.repeats}`, torch {torch.__version__}, 2 threads, medians, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}.\n\n"
            + text)


if __name__ == "__main__":
    main()
