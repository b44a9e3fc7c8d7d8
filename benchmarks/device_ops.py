"""Time the performance model's operators on a real GPU with PyTorch (random weights, real shapes).

Run on a machine with a CUDA GPU and PyTorch (no vLLM needed):

    python benchmarks/device_ops.py --out benchmarks/data/h200_ops.csv

Rows (one per shape, median of repeated CUDA-event timings after warm-up, seconds):
- ``gemm_bf16``: ``x @ W`` of m token rows through the K×N layer shards of Llama-3.1-8B / 70B at
  TP 1, 2, 4, 8 (QKV, O, gate+up, down), m = 1 ... 8192 (torch.matmul, cuBLAS).
- ``gemm_fp8``: the same with per-tensor fp8 e4m3 operands through ``torch._scaled_mm`` (where the
  PyTorch build has it), activation quantization not included.
- ``prefill_attention``: causal SDPA (the flash backend) of one sequence of s tokens, 32/8 query
  heads per GPU over 8 KV heads (GQA), head_dim 128.
- ``decode_attention``: SDPA of one query token per sequence against c cached tokens, batch b.
- ``rmsnorm``, ``silu_mul``, ``add``: the element-wise ops at m tokens × hidden (or FFN) width.

Nothing here is vLLM's kernel (no paged KV, no custom all-reduce): the figures bound the operator
formulas from below on this silicon. ``compare_device_ops.py`` puts them beside the model.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

MODELS = {  # hidden, heads, kv heads, head_dim, ffn
    "llama-3.1-8b": (4096, 32, 8, 128, 14336),
    "llama-3.1-70b": (8192, 64, 8, 128, 28672),
}
TPS = (1, 2, 4, 8)
TOKENS = (1, 8, 32, 128, 512, 2048, 8192)


def timed(fn, reps: int = 20) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``fn`` over ``reps`` CUDA-event timings after 3 warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop adding rows after this long")
    args = ap.parse_args()
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    name = torch.cuda.get_device_name(0)

    def add(kind: str, seconds: float, **shape: object) -> None:
        rows.append({"device": name, "torch": torch.__version__, "kind": kind, "seconds": f"{seconds:.6g}", **shape})

    bf = torch.bfloat16
    has_fp8 = hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
    shapes = set()
    for h, nq, nkv, d, f in MODELS.values():
        for tp in TPS:
            kvg = max(1, nkv // tp)
            shapes |= {(h, (nq // tp + 2 * kvg) * d), (nq // tp * d, h), (h, 2 * f // tp), (f // tp, h)}
    for k, n in sorted(shapes):
        w = torch.randn(k, n, device=dev, dtype=bf) / k**0.5
        w8 = w.to(torch.float8_e4m3fn).t().contiguous().t() if has_fp8 else None  # column-major for _scaled_mm
        one = torch.ones((), device=dev)
        for m in TOKENS:
            x = torch.randn(m, k, device=dev, dtype=bf)
            add("gemm_bf16", timed(lambda x=x, w=w: x @ w), m=m, k=k, n=n)
            if w8 is not None and m % 16 == 0:
                x8 = x.to(torch.float8_e4m3fn)
                try:
                    sec = timed(
                        lambda x8=x8, w8=w8, s=one: torch._scaled_mm(x8, w8, scale_a=s, scale_b=s, out_dtype=bf)
                    )
                    add("gemm_fp8", sec, m=m, k=k, n=n)
                except (RuntimeError, TypeError) as exc:  # a build without the kernel for this shape
                    print(f"fp8 {m}x{k}x{n}: {exc}".splitlines()[0], flush=True)
                    w8 = None
        if time.perf_counter() - t0 > args.budget_s * 0.5:
            print("GEMM budget reached", flush=True)
            break

    def sdpa(q: torch.Tensor, kv: torch.Tensor, is_causal: bool = False, enable_gqa: bool = True) -> torch.Tensor:
        """SDPA with grouped KV heads (expanded on builds without ``enable_gqa``)."""
        f = torch.nn.functional.scaled_dot_product_attention
        try:
            return f(q, kv, kv, is_causal=is_causal, enable_gqa=enable_gqa)
        except TypeError:
            kv = kv.repeat_interleave(q.shape[1] // kv.shape[1], dim=1)
            return f(q, kv, kv, is_causal=is_causal)

    for nq in (8, 32, 64):
        nkv = 8
        for s in (512, 1024, 2048, 4096, 8192):
            q = torch.randn(1, nq, s, 128, device=dev, dtype=bf)
            kv = torch.randn(1, nkv, s, 128, device=dev, dtype=bf)
            add(
                "prefill_attention",
                timed(lambda q=q, kv=kv: sdpa(q, kv, is_causal=True)),
                heads=nq,
                kv_heads=nkv,
                tokens=s,
            )
        for b in (1, 8, 32, 128):
            for c in (512, 2048, 8192):
                q = torch.randn(b, nq, 1, 128, device=dev, dtype=bf)
                kv = torch.randn(b, nkv, c, 128, device=dev, dtype=bf)
                add(
                    "decode_attention",
                    timed(lambda q=q, kv=kv: sdpa(q, kv)),
                    heads=nq,
                    kv_heads=nkv,
                    batch=b,
                    context=c,
                )
        if time.perf_counter() - t0 > args.budget_s * 0.85:
            print("attention budget reached", flush=True)
            break
    for h, _, _, _, f in MODELS.values():
        for m in TOKENS:
            x = torch.randn(m, h, device=dev, dtype=bf)
            g = torch.ones(h, device=dev, dtype=bf)
            add(
                "rmsnorm",
                timed(lambda x=x, g=g: x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(bf) * g),
                m=m,
                n=h,
            )
            add("add", timed(lambda x=x: x + x), m=m, n=h)
            u = torch.randn(m, 2 * f, device=dev, dtype=bf)
            add("silu_mul", timed(lambda u=u, f=f: torch.nn.functional.silu(u[:, :f]) * u[:, f:]), m=m, n=f)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["device", "torch", "kind", "m", "k", "n", "heads", "kv_heads", "tokens", "batch", "context", "seconds"]
    with open(args.out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=fields)
        wr.writeheader()
        wr.writerows(rows)
    print(f"{len(rows)} rows in {time.perf_counter() - t0:.0f} s on {name} -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
