#!/usr/bin/env python3
"""The PyTorch side of `align bench`: the same models, steps and measurements, the same JSON layout.

Models are transformers' LlamaForCausalLM with align's shapes (tied embeddings, intermediate size
ceil(8d/3 to 64), RMSNorm eps 1e-5, RoPE theta 10000, no biases); a training step is
forward (body, LM head, cross-entropy) -> backward -> clip_grad_norm_(1.0) -> AdamW (weight decay
0.1 on matrices, none on norms) -> zero_grad, each part timed on its own; generation is
`model.generate(do_sample=False)` with min_new_tokens = max_new_tokens. FLOPs are counted as in
crates/align/src/cmd/bench.rs: tokens * (6 N + 12 L T d).

Run with scripts/fixtures/.venv/bin/python (torch 2.15, transformers 5.23); see scripts/bench/run.sh.
"""

import argparse
import json
import os
import statistics
import sys
import time

PRESETS = {
    "tiny": dict(vocab=4096, d_model=256, layers=4, heads=4, seq=256, batch=8, default_steps=10),
    "small": dict(vocab=32000, d_model=768, layers=12, heads=12, seq=512, batch=4, default_steps=3),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["tiny", "small", "all"], default="all")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 10 tiny, 3 small)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all cores)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-matmul", action="store_true")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3, help="best-of repetitions for matmul and generation")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (align bench --device takes the same)")
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="transformers attn_implementation")
    p.add_argument("--profile", action="store_true", help="torch.profiler over one extra training step: top ops")
    return p.parse_args()


args = parse_args()
threads = args.threads or os.cpu_count()
# Before torch starts its pools.
os.environ.setdefault("OMP_NUM_THREADS", str(threads))
os.environ.setdefault("MKL_NUM_THREADS", str(threads))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

torch.set_num_threads(threads)
transformers.logging.set_verbosity_error()


def random_ids(n, vocab, seed):
    """The xorshift64* stream of bench.rs, so both sides train on the same ids."""
    m = (1 << 64) - 1
    s = ((seed * 0x9E3779B97F4A7C15) & m) | 1
    out = []
    for _ in range(n):
        s ^= s >> 12
        s ^= (s << 25) & m
        s ^= s >> 27
        out.append((((s * 0x2545F4914F6CDD1D) & m) >> 33) % vocab)
    return out


def rss_mib():
    """(VmRSS, VmHWM) in MiB."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0]) / 1024.0
    return vals.get("VmRSS"), vals.get("VmHWM")


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def dev():
    return torch.device(args.device)


def now():
    """perf_counter after the GPU's queued work is done (CUDA runs asynchronously; a no-op on the CPU)."""
    if dev().type == "cuda":
        torch.cuda.synchronize(dev())
    return time.perf_counter()


def peak_mib():
    """Peak memory of the phase: the process's VmHWM on the CPU; None on a GPU (as align bench)."""
    return rss_mib()[1] if dev().type == "cpu" else None


def build(p):
    d = p["d_model"]
    cfg = LlamaConfig(
        vocab_size=p["vocab"],
        hidden_size=d,
        intermediate_size=-(-(8 * d // 3) // 64) * 64,  # align: (8d/3).div_ceil(64) * 64
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        num_key_value_heads=p["heads"],
        head_dim=d // p["heads"],
        max_position_embeddings=p["seq"],
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        attn_implementation=args.attn,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dev())
    return model, cfg


def matmul_peak(n, reps):
    a = torch.randn(n, n, device=dev())
    b = torch.randn(n, n, device=dev())
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = now()
        a @ b
        best = min(best, now() - t0)
    return 2 * n**3 / best / 1e9


def bench_train(name, p, warmup, steps):
    reset_peak_rss()
    rss_start = rss_mib()[0]
    model, cfg = build(p)
    model.train()
    n_params = sum(x.numel() for x in model.parameters())
    decay = [x for x in model.parameters() if x.dim() >= 2]
    no_decay = [x for x in model.parameters() if x.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4, betas=(0.9, 0.999), eps=1e-8,
    )
    b, t, v = p["batch"], p["seq"], p["vocab"]
    pos = torch.arange(t, device=dev()).unsqueeze(0).repeat(b, 1)
    print(f"train {name}: {n_params / 1e6:.2f}M params, batch {b} x seq {t}, {warmup} warmup + {steps} timed steps",
          flush=True)

    def step(i):
        data = torch.tensor(random_ids(b * (t + 1), v, i + 1), device=dev()).view(b, t + 1)
        ids, targets = data[:, :t].contiguous(), data[:, 1:].contiguous()
        t0 = now()
        hidden = model.model(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state  # (B, T, C)
        t1 = now()
        logits = model.lm_head(hidden)  # (B, T, V)
        t2 = now()
        loss = F.cross_entropy(logits.view(b * t, v), targets.view(-1))
        loss_val = loss.item()
        t3 = now()
        loss.backward()
        t4 = now()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t5 = now()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del hidden, logits, loss
        t6 = now()
        return loss_val, dict(fwd_body=t1 - t0, fwd_head=t2 - t1, loss=t3 - t2, bwd=t4 - t3, clip=t5 - t4,
                              opt=t6 - t5, total=t6 - t0)

    times, losses = [], []
    for i in range(warmup + steps):
        loss_val, tm = step(i)
        losses.append(loss_val)
        if i >= warmup:
            times.append(tm)
    peak = peak_mib()

    profile = None
    if args.profile:
        from torch.profiler import profile as tprofile, ProfilerActivity

        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            step(warmup + steps)
        ka = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ka)
        top = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:20]
        profile = [dict(op=e.key, self_s=e.self_cpu_time_total / 1e6, pct=100 * e.self_cpu_time_total / total,
                        calls=e.count) for e in top]
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

    med = lambda k: statistics.median(x[k] for x in times)  # noqa: E731
    step_s = med("total")
    tokens = b * t
    flops = tokens * (6 * n_params + 12 * p["layers"] * t * p["d_model"])
    fwd = statistics.median(x["fwd_body"] + x["fwd_head"] + x["loss"] for x in times)
    r = dict(
        params=n_params, batch=b, seq=t, d_model=p["d_model"], layers=p["layers"], heads=p["heads"], vocab=v,
        intermediate=cfg.intermediate_size, warmup=warmup, steps=steps, tokens_per_step=tokens,
        flops_per_step=flops, step_s=step_s, tokens_per_s=tokens / step_s, gflops=flops / step_s / 1e9,
        fwd_s=fwd, fwd_body_s=med("fwd_body"), fwd_head_s=med("fwd_head"), loss_s=med("loss"), bwd_s=med("bwd"),
        clip_s=med("clip"), opt_s=med("opt"), step_times_s=[x["total"] for x in times], losses=losses,
        rss_start_mib=rss_start, peak_rss_mib=peak,
    )
    if profile is not None:
        r["profile"] = profile
    print(f"  step {step_s:.3f}s  {tokens / step_s:.0f} tok/s  {flops / step_s / 1e9:.1f} GFLOP/s  "
          f"(fwd {fwd:.3f} bwd {med('bwd'):.3f} clip {med('clip'):.3f} opt {med('opt'):.3f})  peak {peak or float('nan'):.0f} MiB",
          flush=True)
    del model, opt
    return r


@torch.inference_mode()
def bench_generate(name, p, prompt_len, new_tokens, reps):
    assert prompt_len + new_tokens <= p["seq"], "prompt + new tokens exceed the context"
    model, _ = build(p)
    model.eval()
    res = dict(prompt_len=prompt_len, new_tokens=new_tokens, reps=reps)
    for batch in (1, 8):
        reset_peak_rss()
        prompts = torch.tensor([random_ids(prompt_len, p["vocab"], 1000 + i) for i in range(batch)], device=dev())
        mask = torch.ones_like(prompts)
        kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=None, use_cache=True)
        model.generate(prompts, max_new_tokens=4, min_new_tokens=4, **kw)
        best = float("inf")
        for _ in range(reps):
            t0 = now()
            out = model.generate(prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
            best = min(best, now() - t0)
            assert out.shape == (batch, prompt_len + new_tokens), out.shape
        tps = batch * new_tokens / best
        print(f"generate {name} batch {batch}: {tps:.0f} tok/s ({best:.2f}s for {new_tokens} new tokens per row)",
              flush=True)
        res[f"b{batch}"] = dict(tokens_per_s=tps, seconds=best, peak_rss_mib=peak_mib())
    return res


def main():
    sizes = ["tiny", "small"] if args.size == "all" else [args.size]
    out = dict(
        impl="pytorch", version=f"torch {torch.__version__}, transformers {transformers.__version__}",
        threads=threads, device=args.device, attn_implementation=args.attn, interop_threads=torch.get_num_interop_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(), train={}, generate={},
    )
    if not args.skip_matmul:
        g = matmul_peak(2048, max(args.reps, 1))
        print(f"matmul 2048x2048x2048 f32: {g:.1f} GFLOP/s (best of {max(args.reps, 1)})", flush=True)
        out["matmul"] = dict(n=2048, dtype="f32", gflops=g)
    if not args.skip_training:
        for s in sizes:
            p = PRESETS[s]
            out["train"][s] = bench_train(s, p, args.warmup, max(args.steps or p["default_steps"], 1))
    if not args.skip_generation:
        for s in sizes:
            out["generate"][s] = bench_generate(s, PRESETS[s], args.prompt_len, args.new_tokens, max(args.reps, 1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
