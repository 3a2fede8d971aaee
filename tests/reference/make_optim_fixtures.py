#!/usr/bin/env python3
"""Writes tests/reference/fixtures/optim/optim_fixtures.json, the reference
trajectories that tests/optim/test_optim_reference.cpp compares gridlock's
optimizers against (torch is the oracle; no download):

  adamw_f32, adamw_f64   torch.optim.AdamW, betas (0.9, 0.95), eps 1e-8, two
                         param groups (w [3, 4] with weight_decay 0.1, b [4]
                         with 0), 5 steps with a different lr per step and
                         fixed per-step gradients; params after every step
                         and the final exp_avg / exp_avg_sq
  sgd_f32, sgd_f64       torch.optim.SGD, momentum 0.9, nesterov, weight
                         decay 0.01 on w and 0 on b, same shapes and steps
  ns_*                   KellerJordan/Muon's zeropower_via_newtonschulz5 on a
                         fixed 8x5 and 5x8 matrix, run in float32 and float64
                         (the reference casts to bfloat16; see optim/muon.h)

Inputs are drawn from torch.Generator(seed) and stored in the file, so the
C++ side needs no RNG. Numbers are Python floats (f32 values are exact in
double), row-major.

Usage:
  make_optim_fixtures.py --out DIR     write DIR/optim_fixtures.json
  make_optim_fixtures.py --check DIR   regenerate and compare with the file
                                       in DIR: same structure, each tensor's
                                       numbers within 1e-5 of its largest
                                       magnitude (another CPU's BLAS rounds
                                       the matmuls differently)
"""
import argparse
import json
import math
import os
import sys

import torch

VERSION = 1
LRS = [1e-2, 8e-3, 6e-3, 4e-3, 2e-3]


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def make_inputs(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
    grads = [(torch.randn(3, 4, generator=gen, dtype=torch.float64).to(dtype),
              torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)) for _ in LRS]
    return w, b, grads


def trajectory(kind, dtype):
    w0, b0, grads = make_inputs(dtype, 1234)
    w = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(b0.clone())
    if kind == "adamw":
        wd = 0.1
        opt = torch.optim.AdamW([{"params": [w], "weight_decay": wd},
                                 {"params": [b], "weight_decay": 0.0}],
                                lr=LRS[0], betas=(0.9, 0.95), eps=1e-8)
        hyper = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay_w": wd}
    else:
        wd = 0.01
        opt = torch.optim.SGD([{"params": [w], "weight_decay": wd},
                               {"params": [b], "weight_decay": 0.0}],
                              lr=LRS[0], momentum=0.9, nesterov=True)
        hyper = {"momentum": 0.9, "nesterov": True, "weight_decay_w": wd}
    steps = []
    for lr, (gw, gb) in zip(LRS, grads):
        for group in opt.param_groups:
            group["lr"] = lr
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        steps.append({"w": flat(w), "b": flat(b)})
    out = {"hyper": hyper, "lrs": LRS, "w0": flat(w0), "b0": flat(b0), "w_shape": [3, 4],
           "b_shape": [4], "grads_w": [flat(g) for g, _ in grads],
           "grads_b": [flat(g) for _, g in grads], "steps": steps}
    if kind == "adamw":
        out["exp_avg_w"] = flat(opt.state[w]["exp_avg"])
        out["exp_avg_sq_w"] = flat(opt.state[w]["exp_avg_sq"])
    else:
        out["momentum_buffer_w"] = flat(opt.state[w]["momentum_buffer"])
    return out


# KellerJordan/Muon muon.py, verbatim except `G.bfloat16()`: we keep G's dtype.
def zeropower_via_newtonschulz5(G, steps):
    assert G.ndim >= 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def newton_schulz(rows, cols, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(rows, cols, generator=gen, dtype=torch.float64).to(dtype)
    return {"shape": [rows, cols], "g": flat(g), "out": flat(zeropower_via_newtonschulz5(g, 5))}


def build():
    torch.set_num_threads(1)
    fx = {"format": "gridlock-optim-fixtures", "version": VERSION}
    for kind in ("adamw", "sgd"):
        fx[kind + "_f32"] = trajectory(kind, torch.float32)
        fx[kind + "_f64"] = trajectory(kind, torch.float64)
    for name, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        fx["ns_8x5_" + name] = newton_schulz(8, 5, dtype, 7)
        fx["ns_5x8_" + name] = newton_schulz(5, 8, dtype, 8)
    return fx


# Another CPU's torch kernels (AVX2 against AVX-512 matmuls) round the
# Newton-Schulz products differently, and its five iterations amplify that
# to about 1e-6 of the output's scale, more on its smallest elements; a stale
# fixture (other inputs, coefficients or hyperparameters) is off by order
# one. So a list of numbers (one tensor) is compared against its largest
# magnitude, and everything else (structure, sizes, integers) exactly.
SCALED_TOL = 1e-5


def is_number_list(x):
    return isinstance(x, list) and x and all(isinstance(v, float) for v in x)


def compare(got, ref, path, errors):
    if isinstance(ref, dict):
        if not isinstance(got, dict) or list(got) != list(ref):
            errors.append(f"{path}: keys differ")
            return
        for k in ref:
            compare(got[k], ref[k], f"{path}.{k}", errors)
    elif is_number_list(ref):
        if not is_number_list(got) or len(got) != len(ref):
            errors.append(f"{path}: not a list of {len(ref)} numbers")
            return
        scale = max(abs(v) for v in ref)
        worst = max(abs(g - r) for g, r in zip(got, ref)) / max(scale, 1e-300)
        if not worst <= SCALED_TOL:
            errors.append(f"{path}: max |diff| / max |committed| {worst:.3e} > {SCALED_TOL:.0e}")
    elif isinstance(ref, list):
        if not isinstance(got, list) or len(got) != len(ref):
            errors.append(f"{path}: length differs")
            return
        for i, (g, r) in enumerate(zip(got, ref)):
            compare(g, r, f"{path}[{i}]", errors)
    elif isinstance(ref, float):
        if not math.isclose(got, ref, rel_tol=SCALED_TOL, abs_tol=1e-12):
            errors.append(f"{path}: {got!r} != {ref!r}")
    elif got != ref:
        errors.append(f"{path}: {got!r} != {ref!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out")
    mode.add_argument("--check")
    args = ap.parse_args()
    fx = build()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "optim_fixtures.json"), "w") as f:
            json.dump(fx, f, indent=1)
            f.write("\n")
        return 0
    with open(os.path.join(args.check, "optim_fixtures.json")) as f:
        ref = json.load(f)
    errors = []
    compare(json.loads(json.dumps(fx)), ref, "fixtures", errors)
    for e in errors[:20]:
        print("DIFF", e)
    n = sum(len(v["steps"]) for k, v in fx.items() if isinstance(v, dict) and "steps" in v)
    print(f"optim fixtures: {n} optimizer steps and 4 Newton-Schulz outputs regenerated with torch "
          f"{torch.__version__}; {len(errors)} differences")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
