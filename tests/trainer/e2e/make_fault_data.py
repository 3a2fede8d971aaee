#!/usr/bin/env python3
"""Token shards and a tiny recipe for the fault tests (tests/trainer/e2e/fault_*.sh).

    make_fault_data.py WORK_DIR [STEPS] [SCHEDULE]

Writes WORK_DIR/train.gltok, val.gltok (the GLTOKENS layout of
data/token_shard.h: 32-byte header, uint16 ids) from a fixed pseudo-random
pattern, and WORK_DIR/recipe.yaml: a 2-layer d=32 model, one CPU thread (so
runs are bit-reproducible), a checkpoint every 2 steps.
"""
import struct
import sys

work = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
schedule = sys.argv[3] if len(sys.argv) > 3 else "cosine"
V = 64


def tokens(n, seed):
    out, x = [], seed
    for i in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append((x >> 8) % V if (x >> 28) == 0 else (i * 7 + i // 5) % V)
    return out


def shard(path, ids):
    with open(path, "wb") as f:
        f.write(b"GLTOKENS" + struct.pack("<IIQQ", 1, 2, len(ids), V))
        f.write(struct.pack("<%dH" % len(ids), *ids))


shard(f"{work}/train.gltok", tokens(3000, 1))
shard(f"{work}/val.gltok", tokens(400, 2))
sched = ("{kind: cosine, params: {warmup: 2, min_ratio: 0.1}}" if schedule == "cosine"
         else "{kind: constant}")
with open(f"{work}/recipe.yaml", "w") as f:
    f.write(f"""run: {{name: f, seed: 5, out_dir: {work}/runs}}
model: {{preset: pythia-14m, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64,
        vocab_size: 64, max_positions: 16}}
data: {{kind: shards, paths: [{work}/train.gltok], val_paths: [{work}/val.gltok], seq_len: 8, batch_size: 2}}
optim: {{name: adamw, lr: 0.003}}
schedule: {sched}
train: {{steps: {steps}, log_every: 1, eval_every: 4, eval_batches: 2, save_every: 2, keep_last: 3, threads: 1}}
quant: {{probe_every: -1}}
""")
