#!/usr/bin/env python3
"""gridlock's ggml blocks against llama.cpp's gguf-py (`gguf.quants`), byte for byte.

    quant_blocks_ref.py --tool BIN --workdir DIR [--blocks N] [--seed S]

BIN is tests/reference/quant_blocks_tool.cpp. On N random blocks plus every
adversarial block below, for Q4_0, Q4_1 and Q8_0 (and the F16/BF16 encodings):

  1. gridlock's ggml_quantize bytes == gguf.quants.quantize bytes;
  2. gridlock's ggml_dequantize of those bytes == gguf.quants.dequantize (bits);
  3. the presets q4_0 / q4_1 / q8_0 through fake_quantize_reference ==
     gguf.quants.dequantize(gguf.quants.quantize(x)) (bits).

Adversarial blocks: exact half-way ties on each format's grid (and one f32 ulp
either side), all-zero blocks, a single huge outlier of either sign, equal
magnitudes of opposite sign in both orders, constant blocks, values whose
scale is an f16 subnormal, wide dynamic ranges. All are finite and keep
1/d finite (|max| >= 1e-30): the reference rule is undefined beyond that.
Exits non-zero naming the format, the first differing block and its bytes.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import quants

BLOCK = 32


def adversarial_blocks(rng):
    out = []

    def add(b):
        out.append(np.asarray(b, dtype=np.float32).reshape(BLOCK))

    ramp = (np.arange(BLOCK, dtype=np.float32) - 16) * np.float32(0.125)
    add(ramp)                                    # spec.md 4.1 test vector
    add(-ramp)
    add(np.zeros(BLOCK))
    for scale in (1.0, 1e-3, 1e3):
        for sign in (1.0, -1.0):
            b = rng.standard_normal(BLOCK).astype(np.float32) * np.float32(scale * 1e-3)
            b[rng.integers(BLOCK)] = np.float32(sign * scale * 1e3)  # a single huge outlier
            add(b)
    for first in (1.0, -1.0):                    # equal magnitudes, opposite signs
        b = rng.uniform(-1, 1, BLOCK).astype(np.float32)
        b[2], b[9] = first * 3.0, -first * 3.0
        add(b)
    for v in (0.375, -2.0, 1e-20):               # constant blocks
        add(np.full(BLOCK, v))
    # Ties: Q4_0 with max = -8 or 8 (|d| = 1) has its half-way points at k + 0.5;
    # Q8_0 with amax = 127 (d = 1) too; Q4_1 with min 0, max 15 at k + 0.5.
    halves = (np.arange(BLOCK) % 16 - 8 + 0.5).astype(np.float32)
    for anchor in (-8.0, 8.0, 127.0, -127.0, 15.0):
        b = halves.copy()
        b[0] = anchor
        if anchor == 15.0:
            b = np.abs(b)
            b[1] = 0.0
        add(b)
        add(np.nextafter(b, np.float32(np.inf)))   # one ulp either side of the ties
        add(np.nextafter(b, np.float32(-np.inf)))
    for exp in (-30, -12, -7, -5, 0, 4, 5):      # f16-subnormal d up to large d
        add(rng.standard_normal(BLOCK).astype(np.float32) * np.float32(10.0 ** exp))
    b = rng.standard_normal(BLOCK).astype(np.float32) * np.float32(10.0) ** rng.integers(-6, 6, BLOCK)
    add(b.astype(np.float32))                    # wide dynamic range
    return out


def random_blocks(rng, n):
    scales = np.float32(10.0) ** rng.uniform(-4, 3, (n, 1)).astype(np.float32)
    x = rng.standard_normal((n, BLOCK)).astype(np.float32) * scales
    heavy = rng.random(n) < 0.2                  # heavy tails, like trained weights
    x[heavy] = (rng.standard_t(3, (int(heavy.sum()), BLOCK)) * scales[heavy]).astype(np.float32)
    return [row for row in x]


def run_tool(tool, *args):
    r = subprocess.run([tool, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quant_blocks_tool {' '.join(map(str, args))} failed: {r.stderr.strip()}")


def first_diff(a, b, row_bytes):
    a, b = np.asarray(a).view(np.uint8).reshape(-1), np.asarray(b).view(np.uint8).reshape(-1)
    i = int(np.nonzero(a != b)[0][0])
    blk = i // row_bytes
    sl = slice(blk * row_bytes, (blk + 1) * row_bytes)
    return f"block {blk}: gridlock {a[sl].tobytes().hex()} vs gguf {b[sl].tobytes().hex()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--blocks", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    x = np.stack(adversarial_blocks(rng) + random_blocks(rng, args.blocks)).astype(np.float32)
    n_blocks = x.shape[0]
    src = os.path.join(args.workdir, "x.f32")
    x.reshape(-1).tofile(src)
    failures = []
    # Huge outliers overflow the f16 d to inf on purpose (as in ggml): numpy warns.
    np.seterr(all="ignore")
    for name, qt, preset in (("Q4_0", QT.Q4_0, "q4_0"), ("Q4_1", QT.Q4_1, "q4_1"),
                             ("Q8_0", QT.Q8_0, "q8_0"), ("F16", QT.F16, None),
                             ("BF16", QT.BF16, None)):
        ref = np.asarray(quants.quantize(x, qt)).view(np.uint8).reshape(n_blocks, -1)
        row_bytes = ref.shape[1]
        out = os.path.join(args.workdir, f"{name}.bin")
        run_tool(args.tool, "quantize", name, src, out)
        got = np.fromfile(out, dtype=np.uint8).reshape(n_blocks, -1)
        if got.shape != ref.shape or not np.array_equal(got, ref):
            failures.append(f"{name} bytes differ ({int((got != ref).any(1).sum())} of {n_blocks} "
                            f"blocks); first {first_diff(got, ref, row_bytes)}")
            continue
        deq_ref = np.asarray(quants.dequantize(ref, qt), dtype=np.float32).reshape(-1)
        deq = os.path.join(args.workdir, f"{name}.deq.f32")
        run_tool(args.tool, "dequantize", name, x.size, out, deq)
        deq_got = np.fromfile(deq, dtype=np.float32)
        if not np.array_equal(deq_got.view(np.uint32), deq_ref.view(np.uint32)):
            failures.append(f"{name} dequantized values differ at flat index "
                            f"{int(np.nonzero(deq_got.view(np.uint32) != deq_ref.view(np.uint32))[0][0])}")
        if preset:
            fake = os.path.join(args.workdir, f"{name}.fake.f32")
            run_tool(args.tool, "fake", preset, n_blocks, BLOCK, src, fake)
            fake_got = np.fromfile(fake, dtype=np.float32)
            bad = np.nonzero(fake_got.view(np.uint32) != deq_ref.view(np.uint32))[0]
            if bad.size:
                i = int(bad[0])
                failures.append(f"preset {preset}: fake_quantize_reference differs from gguf at "
                                f"block {i // BLOCK} element {i % BLOCK}: {fake_got[i]!r} vs {deq_ref[i]!r}")
        print(f"{name}: {n_blocks} blocks identical to gguf.quants")
    if failures:
        sys.exit("quant_blocks_ref: FAILED\n  " + "\n  ".join(failures))
    print("quant_blocks_ref: OK")


if __name__ == "__main__":
    main()
