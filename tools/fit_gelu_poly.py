#!/usr/bin/env python3
"""Coefficients of the polynomial GELU fast path in cpu/activation.cpp.

For |x| <= 3 (v = x^2 in [0, 9]) the exact GELU and its derivative are
    Phi(x)       = 1/2 + x h(v),  h(v) = erf(sqrt(v / 2)) / (2 sqrt(v))
    d/dx x Phi(x) = 1/2 + x q(v),  q(v) = h(v) + exp(-v / 2) / sqrt(2 pi)
h and q are entire and smooth on [0, 9], so Chebyshev interpolation in
y = 2 v / 9 - 1 converges fast; the series is converted to powers of y for
Horner's rule (sum |a_k| stays below 1, so evaluating it in double loses
nothing). Everything is computed in 50-digit arithmetic (mpmath), then
rounded to double; the script reports the worst relative error of the
double-precision Horner evaluation on a dense grid.

Usage: /usr/bin/python3 tools/fit_gelu_poly.py            (prints the arrays)
       /usr/bin/python3 tools/fit_gelu_poly.py --check cpu/activation.cpp
The --check form (ctest `gelu_poly_coefficients`) fails unless the kH and kQ
arrays in that file are exactly these doubles. Needs python3-mpmath.
"""
import re
import sys

try:
    import mpmath as mp
except ImportError:
    sys.exit("fit_gelu_poly.py: needs mpmath (apt-get install -y python3-mpmath)")

mp.mp.dps = 50
V = 9  # v = x^2 range: |x| <= 3
DEGREE = {"h": 14, "q": 16}


def h(v):
    if v == 0:
        return 1 / mp.sqrt(2 * mp.pi)
    return mp.erf(mp.sqrt(v / 2)) / (2 * mp.sqrt(v))


def q(v):
    return h(v) + mp.exp(-v / 2) / mp.sqrt(2 * mp.pi)


def chebyshev(f, n):
    """Coefficients c_j of the interpolant sum c_j T_j(y) at n + 1 Chebyshev nodes."""
    N = n + 1
    nodes = [(k + mp.mpf(1) / 2) * mp.pi / N for k in range(N)]
    fv = [f((mp.cos(t) + 1) * V / 2) for t in nodes]
    c = [2 * sum(fv[k] * mp.cos(j * nodes[k]) for k in range(N)) / N for j in range(N)]
    c[0] /= 2
    return c


def to_powers(c):
    """sum c_j T_j(y) as sum a_k y^k (T_{j+1} = 2 y T_j - T_{j-1})."""
    T = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]
    while len(T) < len(c):
        t = [mp.mpf(0)] + [2 * x for x in T[-1]]
        for i, x in enumerate(T[-2]):
            t[i] -= x
        T.append(t)
    a = [mp.mpf(0)] * len(c)
    for j, cj in enumerate(c):
        for i, x in enumerate(T[j]):
            a[i] += cj * x
    return [float(x) for x in a]


def horner(a, y):
    p = 0.0
    for x in reversed(a):
        p = p * y + x
    return p


def fitted():
    out = {}
    for name, f in (("h", h), ("q", q)):
        a = to_powers(chebyshev(f, DEGREE[name]))
        worst = 0.0
        for i in range(9001):
            v = V * i / 9000
            ref = f(mp.mpf(v))
            worst = max(worst, float(abs((horner(a, v * (2 / V) - 1) - ref) / ref)))
        out[name] = (a, worst)
    return out


def check(path):
    src = open(path).read()
    ok = True
    for name, (a, worst) in fitted().items():
        m = re.search(r"constexpr double k%s\[(\d+)\] = \{([^}]*)\}" % name.upper(), src)
        if not m:
            print(f"{path}: no array k{name.upper()}")
            ok = False
            continue
        have = [float(x) for x in m.group(2).replace("\n", " ").split(",") if x.strip()]
        if have != a:
            print(f"{path}: k{name.upper()} differs from the fit ({len(have)} vs {len(a)} coefficients)")
            ok = False
        if worst > 2e-13:
            print(f"fit {name}: max relative error {worst:.2e} > 2e-13")
            ok = False
    print("gelu polynomial coefficients:", "match" if ok else "MISMATCH")
    return ok


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    sys.exit(0 if check(sys.argv[2]) else 1)
if len(sys.argv) != 1:
    sys.exit("usage: fit_gelu_poly.py [--check cpu/activation.cpp]")
for name, (a, worst) in fitted().items():
    print(f"// {name}: degree {DEGREE[name]}, max relative error {worst:.2e} (double Horner, 9001 points)")
    print(f"constexpr double k{name.upper()}[{len(a)}] = {{")
    print(",\n".join(f"    {x!r}" for x in a) + "};")
