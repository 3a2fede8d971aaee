"""The PyTorch peer of bench/pythia_forward.cpp: a plain PyTorch GPT-NeoX
(Pythia) forward, same config, random weights, f32, CPU, same thread count,
torch.inference_mode. Prints one JSON line like the C++ program.

Run it the way PyTorch is fastest here (bench/pythia_forward.sh does):
bench/torch_peer.sh says how (OpenBLAS's AVX-512 kernels forced where the CPU
has them, OMP_WAIT_POLICY=PASSIVE, tcmalloc preloaded, /usr/bin/python3 with
Debian's python3-torch)."""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

PRESETS = {  # hidden, layers, heads, intermediate
    "pythia-14m": (128, 6, 4, 512),
    "pythia-70m": (512, 6, 8, 2048),
    "pythia-160m": (768, 12, 12, 3072),
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

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        qkv = self.qkv(self.ln1(x)).view(B, T, self.NH, 3 * self.HS).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.HS, dim=-1)
        q, k = self.rotary(q, cos, sin), self.rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) \
            if hasattr(F, "scaled_dot_product_attention") else self.attn(q, k, v)
        attn = self.dense(y.permute(0, 2, 1, 3).reshape(B, T, C))
        return x + attn + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    def attn(self, q, k, v):  # torch < 2.0: explicit causal softmax attention
        T = q.shape[-2]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.HS)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="pythia-160m")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    C, L, NH, F_ = PRESETS[a.preset]
    V, HS = 50304, C // NH
    rot = int(HS * 0.25)
    embed = torch.nn.Embedding(V, C)
    blocks = torch.nn.ModuleList(Block(C, NH, F_, rot) for _ in range(L))
    lnf, head = torch.nn.LayerNorm(C), torch.nn.Linear(C, V, bias=False)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot))
    t = torch.arange(a.seq).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    ids = (torch.arange(a.batch * a.seq) * 7919 % V).view(a.batch, a.seq)
    times = []
    with torch.inference_mode():
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            x = embed(ids)
            for blk in blocks:
                x = blk(x, cos, sin)
            logits = head(lnf(x))
            if r > 0:
                times.append(time.perf_counter() - t0)
            del logits
    times.sort()
    best, median = times[0], times[len(times) // 2]
    # The same SGEMM ceiling the C++ program measures (x @ W^T on the
    # block's shapes), here through torch's BLAS (OpenBLAS).
    M, gf = a.batch * a.seq, []
    for K, N in ((C, F_), (F_, C), (C, 3 * C)):
        A, W = torch.randn(M, K), torch.randn(N, K)
        ts = []
        for r in range(6):
            t0 = time.perf_counter()
            torch.mm(A, W.t())
            if r > 0:
                ts.append(time.perf_counter() - t0)
        gf.append(round(2.0 * M * K * N / min(ts) / 1e9, 1))
    print(json.dumps({"bench": "torch_sgemm_ceiling", "gflops_h_to_4h": gf[0],
                      "gflops_4h_to_h": gf[1], "gflops_qkv": gf[2],
                      "ceiling_gflops": max(gf)}))
    print(json.dumps({"bench": "torch_forward", "preset": a.preset, "seq": a.seq,
                      "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
                      "best_s": round(best, 5), "median_s": round(median, 5),
                      "tokens_per_s": round(a.batch * a.seq / best, 1)}))


if __name__ == "__main__":
    main()
