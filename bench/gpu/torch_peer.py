"""The PyTorch peers of bench/gpu/run.sh: Pythia-160m training steps on one
GPU, each at its best, on random token batches:

  hf        transformers' GPTNeoXForCausalLM (built from the Pythia-160m
            config, no download), attn_implementation="sdpa";
  compiled  a plain GPT-NeoX (parallel residual, partial rotary, erf GELU,
            untied head) through torch.compile, attention by
            F.scaled_dot_product_attention(is_causal=True) (flash kernels).

Both keep f32 master weights and optimizer state and compute under
torch.autocast (bf16 by default), as a mixed-precision recipe does; the
step is forward + cross-entropy, backward, clip_grad_norm_(1.0), fused
AdamW (lr 6e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on the 2-D
weights), zero_grad(set_to_none=True). TF32 is on for the f32 parts.

--batch takes a list: the first size that fits in memory is timed (the
"largest micro-batch that fits" when given in descending order). Prints one
JSON line per peer: median step seconds over the timed steps (CUDA events),
tokens/s, model FLOPs per token and MFU against --peak-tflops.

FLOPs per token follow the PaLM/nanoGPT convention: 6 x (matrix-product
parameters: the blocks and the output head, not the input embedding
lookup) + 12 x layers x seq x hidden for attention (full T x T, not halved
for causality)."""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

C, L, NH, FF, V, ROT_PCT = 768, 12, 12, 3072, 50304, 0.25


def flops_per_token(T):
    matmul_params = L * (4 * C * C + 2 * C * FF) + C * V
    return 6 * matmul_params + 12 * L * T * C


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.qkv, self.dense = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.fc1, self.fc2 = torch.nn.Linear(C, FF), torch.nn.Linear(FF, C)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        HS = C // NH
        r = int(HS * ROT_PCT)
        qkv = self.qkv(self.ln1(x)).view(B, T, NH, 3 * HS).transpose(1, 2)
        q, k, v = qkv.split(HS, dim=-1)

        def rotary(t):
            tr, tp = t[..., :r], t[..., r:]
            half = torch.cat((-tr[..., r // 2:], tr[..., :r // 2]), dim=-1)
            return torch.cat((tr * cos + half * sin, tp), dim=-1)

        y = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True)
        attn = self.dense(y.transpose(1, 2).reshape(B, T, C))
        mlp = self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x + attn + mlp


class PlainNeoX(torch.nn.Module):
    def __init__(self, T):
        super().__init__()
        self.embed = torch.nn.Embedding(V, C)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)
        self.head = torch.nn.Linear(C, V, bias=False)
        r = int(C // NH * ROT_PCT)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
        ang = torch.outer(torch.arange(T).float(), inv_freq)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        for m in self.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids, targets):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))


def hf_model(T):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    cfg = GPTNeoXConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=NH,
                        intermediate_size=FF, rotary_pct=ROT_PCT, max_position_embeddings=T,
                        use_parallel_residual=True, tie_word_embeddings=False, hidden_act="gelu")
    m = GPTNeoXForCausalLM._from_config(cfg, attn_implementation="sdpa")

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, ids, targets):
            logits = self.m(input_ids=ids).logits
            return F.cross_entropy(logits.float().view(-1, V), targets.view(-1))
    return Wrap()


def run(kind, T, batch, steps, warmup, dtype):
    torch.manual_seed(0)
    model = (hf_model(T) if kind == "hf" else PlainNeoX(T)).cuda()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    fwd = torch.compile(model) if kind == "compiled" else model

    def step(ids, tgt):
        with torch.autocast("cuda", dtype=dtype):
            loss = fwd(ids, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    times = []
    for s in range(warmup + steps):
        tok = torch.randint(0, V, (batch, T + 1), device="cuda")
        ids, tgt = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        loss = step(ids, tgt)
        b.record()
        torch.cuda.synchronize()
        if s >= warmup:
            times.append(a.elapsed_time(b) / 1e3)
    times.sort()
    med = times[len(times) // 2]
    return med, times[0], float(loss), torch.cuda.max_memory_reserved() / 2**30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", choices=["hf", "compiled"], required=True)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", default="16,12,8,4")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak of the GPU (H100 SXM: 989)")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    for bs in (int(x) for x in a.batch.split(",")):
        try:
            med, best, loss, mem = run(a.peer, a.seq, bs, a.steps, a.warmup, dtype)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            print(f"torch_peer {a.peer}: batch {bs} does not fit, trying the next", file=sys.stderr)
            continue
        tps = bs * a.seq / med
        fpt = flops_per_token(a.seq)
        print(json.dumps({"bench": "torch_" + a.peer, "device": torch.cuda.get_device_name(),
                          "torch": torch.__version__, "dtype": a.dtype, "seq": a.seq, "batch": bs,
                          "steps": a.steps, "median_s": round(med, 5), "best_s": round(best, 5),
                          "tokens_per_s": round(tps, 1), "flops_per_token": fpt,
                          "mfu": round(tps * fpt / (a.peak_tflops * 1e12), 4),
                          "reserved_gib": round(mem, 2), "last_loss": round(loss, 4)}), flush=True)
        return 0
    print(f"torch_peer {a.peer}: no batch size in {a.batch} fits", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
