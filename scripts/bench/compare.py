#!/usr/bin/env python3
"""Prints a Markdown table of align vs PyTorch for every figure the two benchmark JSONs share.

usage: compare.py align.json torch.json
Ratio = align / PyTorch; for times and memory lower is better, for rates higher is better.
"""
import json
import sys

a, t = (json.load(open(p)) for p in sys.argv[1:3])
rows = []
if "matmul" in a and "matmul" in t:
    rows.append(("matmul 2048³ f32 GFLOP/s", a["matmul"]["gflops"], t["matmul"]["gflops"], "higher"))
TRAIN = [("tokens_per_s", "tokens/s", "higher"), ("gflops", "GFLOP/s", "higher"), ("step_s", "step s", "lower"),
         ("fwd_s", "forward s", "lower"), ("fwd_body_s", "forward: body s", "lower"), ("fwd_head_s", "forward: LM head s", "lower"),
         ("loss_s", "forward: loss s", "lower"), ("bwd_s", "backward s", "lower"), ("clip_s", "clip s", "lower"),
         ("opt_s", "AdamW s", "lower"), ("peak_rss_mib", "peak RSS MiB", "lower")]
SIZES = ["tiny", "small"]
for size in SIZES:
    if size not in a.get("train", {}) or size not in t.get("train", {}):
        continue
    for k, label, better in TRAIN:
        rows.append((f"train {size}: {label}", a["train"][size][k], t["train"][size][k], better))
        if k == "step_s":  # the fastest step: least disturbed by other load on the machine
            rows.append((f"train {size}: step s (fastest)", min(a["train"][size]["step_times_s"]),
                         min(t["train"][size]["step_times_s"]), better))
for size in SIZES:
    if size not in a.get("generate", {}) or size not in t.get("generate", {}):
        continue
    for b in ("b1", "b8"):
        rows.append((f"generate {size} batch {b[1:]}: tokens/s", a["generate"][size][b]["tokens_per_s"],
                     t["generate"][size][b]["tokens_per_s"], "higher"))

print(f"threads: align {a['threads']}, PyTorch {t['threads']} ({t.get('version')}, attention {t.get('attn_implementation')})")
print()
print("| figure | align | PyTorch | align / PyTorch | better |")
print("|---|---:|---:|---:|---|")
for name, x, y, better in rows:
    m = max(abs(x), abs(y))
    digits = 0 if m >= 100 else 1 if m >= 10 else 3
    fmt = lambda v: f"{v:.{digits}f}"  # noqa: E731
    ratio = x / y if y else float("nan")
    print(f"| {name} | {fmt(x)} | {fmt(y)} | {ratio:.2f} | {better} |")
