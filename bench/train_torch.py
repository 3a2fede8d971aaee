"""The PyTorch peer of bench/train_bench.cpp: a plain PyTorch GPT-NeoX
training loop on the CPU, f32, same model, batch and optimizer: forward +
cross-entropy, backward, clip_grad_norm_(1.0), AdamW (lr 6e-4, betas
(0.9, 0.95), eps 1e-8, weight decay 0.1 on the 2-D weights only),
zero_grad(set_to_none=True), on random token batches. Prints one JSON line
like the C++ program (tokens/s of the median and of the best step, and the
median seconds of each phase).

The model is written with torch.nn modules (no transformers needed) and
matches GPT-NeoX as gridlock builds it: parallel residual, rotary on the
first 25% of each head's dims (rotate-half), exact (erf) GELU, fused qkv
laid out per head as [q | k | v], untied output head, LayerNorm eps 1e-5.
torch 1.13 has no scaled_dot_product_attention: attention is the explicit
masked softmax, as transformers' GPT-NeoX does.

Run it the way PyTorch is fastest here (bench/train_bench.sh does):
bench/torch_peer.sh says how (OpenBLAS's AVX-512 kernels forced where the CPU
has them, OMP_WAIT_POLICY=PASSIVE, tcmalloc preloaded, /usr/bin/python3 with
Debian's python3-torch), --threads 2."""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

PRESETS = {  # hidden, layers, heads, intermediate, vocab
    "tiny": (256, 4, 4, 1024, 8192),
    "pythia-14m": (128, 6, 4, 512, 50304),
    "pythia-70m": (512, 6, 8, 2048, 50304),
    "pythia-160m": (768, 12, 12, 3072, 50304),
}


class Block(torch.nn.Module):
    def __init__(self, C, NH, F_, rot):
        super().__init__()
        self.NH, self.HS, self.rot = NH, C // NH, rot
        self.ln1, self.ln2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.qkv, self.dense = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.fc1, self.fc2 = torch.nn.Linear(C, F_), torch.nn.Linear(F_, C)

    def rotary(self, x, cos, sin):
        r, h = self.rot, self.rot // 2
        xr, xp = x[..., :r], x[..., r:]
        rot_half = torch.cat((-xr[..., h:], xr[..., :h]), dim=-1)
        return torch.cat((xr * cos + rot_half * sin, xp), dim=-1)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        qkv = self.qkv(self.ln1(x)).view(B, T, self.NH, 3 * self.HS).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.HS, dim=-1)
        q, k = self.rotary(q, cos, sin), self.rotary(k, cos, sin)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.HS))
        y = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        attn = self.dense(y.permute(0, 2, 1, 3).reshape(B, T, C))
        return x + attn + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Model(torch.nn.Module):
    def __init__(self, C, L, NH, F_, V, T):
        super().__init__()
        HS = C // NH
        rot = int(HS * 0.25)
        self.embed = torch.nn.Embedding(V, C)
        self.blocks = torch.nn.ModuleList(Block(C, NH, F_, rot) for _ in range(L))
        self.lnf = torch.nn.LayerNorm(C)
        self.head = torch.nn.Linear(C, V, bias=False)
        for m in self.modules():  # GPT-NeoX init: normal(0, 0.02), zero biases
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, torch.nn.Linear) and m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot))
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, ids, targets):
        x = self.embed(ids)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin, self.mask)
        logits = self.head(self.lnf(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--foreach", action="store_true",
                    help="AdamW's multi-tensor (foreach) implementation")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    C, L, NH, F_, V = PRESETS[a.preset]
    model = Model(C, L, NH, F_, V, a.seq)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, foreach=a.foreach)
    gen = torch.Generator().manual_seed(0)
    phases = {"step": [], "forward": [], "backward": [], "clip": [], "adamw": []}
    loss_value = 0.0
    for s in range(a.warmup + a.steps):
        tokens = torch.randint(0, V, (a.batch, a.seq + 1), generator=gen)
        ids, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        t0 = time.perf_counter()
        loss = model(ids, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        loss_value = loss.item()
        if s >= a.warmup:
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("clip", t3 - t2),
                         ("adamw", t4 - t3), ("step", t4 - t0)):
                phases[k].append(v)

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    tokens = a.batch * a.seq
    print(json.dumps({"bench": "torch_train", "preset": a.preset, "seq": a.seq,
                      "batch": a.batch, "steps": a.steps, "threads": a.threads,
                      "torch": torch.__version__, "foreach": a.foreach,
                      "best_s": round(min(phases["step"]), 5),
                      "median_s": round(median(phases["step"]), 5),
                      "tokens_per_s": round(tokens / median(phases["step"]), 1),
                      "tokens_per_s_best": round(tokens / min(phases["step"]), 1),
                      "forward_s": round(median(phases["forward"]), 5),
                      "backward_s": round(median(phases["backward"]), 5),
                      "clip_s": round(median(phases["clip"]), 5),
                      "adamw_s": round(median(phases["adamw"]), 5),
                      "last_loss": round(loss_value, 4)}))


if __name__ == "__main__":
    main()
