#!/usr/bin/env python3
"""safetensors interoperability between gridlock and the Python `safetensors` library.

Modes (run with the interpreter printed by scripts/python_env.sh):

  generate [OUTDIR]
      Writes the fixture files with the safetensors library (default OUTDIR:
      tests/reference/fixtures/safetensors, committed) plus expected.json, the
      dtype, shape and exact values of every tensor, which the C++ test
      tests/core/test_safetensors.cpp checks without Python.
  check-fixtures
      Regenerates the fixtures into a temporary directory and compares them
      with the committed ones (header JSON as parsed, data buffer bytes,
      expected.json), so the committed files can never go stale. Headers are
      compared parsed because safetensors 0.4.5 writes __metadata__ keys in
      hash-map order.
  check-cpp-writer --tool BIN --workdir DIR
      Has gridlock write the "basic" tensors (BIN = tests/reference/
      safetensors_tool.cpp) and checks the file with the safetensors library:
      values, dtypes, shapes, metadata, and the layout rules (__metadata__
      first, contiguous offsets in the given order, header padded with spaces
      to a multiple of 8).
  check-convert --tool BIN --workdir DIR
      Tests tools/convert_pytorch_bin.py: tiny GPT-NeoX and GPT-2 style state
      dicts (with the buffers and tied weights real checkpoints carry) saved as
      pytorch_model.bin (single and sharded), converted with both writers, and
      read back by the safetensors library and by gridlock.

Every failure exits non-zero with a message naming what differed.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import OrderedDict

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "reference", "fixtures", "safetensors")
CONVERTER = os.path.join(ROOT, "tools", "convert_pytorch_bin.py")

ST_NAMES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64",
            torch.uint8: "U8", torch.bool: "BOOL"}
GRIDLOCK_DTYPES = {"F32", "F64", "F16", "BF16", "I32", "I64", "U16"}


def fail(msg):
    sys.exit(f"safetensors_interop: FAIL: {msg}")


# --- fixtures -------------------------------------------------------------

def fixture_sets():
    """{file or dir name: (OrderedDict of tensors or {shard: tensors}, metadata)}."""
    basic = OrderedDict([
        ("f32", torch.tensor([[-1.5, 0.0, 0.25], [3.0e38, 1e-40, 7.125]], dtype=torch.float32)),
        ("f16", torch.tensor([1.0, -2.5, 65504.0, 6e-8, 0.1], dtype=torch.float16)),
        ("bf16", torch.tensor([[1.0, -3.140625], [1e30, 0.1]], dtype=torch.bfloat16)),
        ("f64", torch.tensor([1 / 3, -1e300, 2.5], dtype=torch.float64)),
        ("i32", torch.tensor([-2**31, 0, 2**31 - 1], dtype=torch.int32)),
        ("i64", torch.tensor([2**62 + 1, -2**63, 0, 42], dtype=torch.int64)),
        ("scalar", torch.tensor(42.5, dtype=torch.float32)),
        ("empty", torch.zeros(0, 3, dtype=torch.float32)),
    ])
    # What an old Pythia model.safetensors holds besides parameters.
    pythia = OrderedDict([
        ("gpt_neox.embed_in.weight",
         (torch.arange(6, dtype=torch.float32).reshape(3, 2) / 4).half()),
        ("gpt_neox.layers.0.attention.bias",
         torch.tril(torch.ones(4, 4, dtype=torch.bool)).reshape(1, 1, 4, 4)),
        ("gpt_neox.layers.0.attention.masked_bias", torch.tensor(-1e9, dtype=torch.float32)),
        ("gpt_neox.layers.0.attention.rotary_emb.inv_freq",
         torch.tensor([1.0, 0.01], dtype=torch.float32)),
        ("bytes", torch.tensor([0, 7, 255], dtype=torch.uint8)),
    ])
    shard1 = OrderedDict([
        ("embed.weight", torch.tensor([[0.5, -1.0], [2.0, 0.125], [-4.0, 8.0]])),
        ("layer.0.bias", torch.tensor([1.5, -0.75], dtype=torch.bfloat16)),
    ])
    shard2 = OrderedDict([("layer.0.weight", torch.tensor([[1.0, 2.0], [3.0, 4.0]],
                                                          dtype=torch.float16))])
    return {
        "basic.safetensors": (basic, {"format": "pt", "note": "gridlock fixture \u00fc\u2603"}),
        "pythia_buffers.safetensors": (pythia, {"format": "pt"}),
        "no_tensors.safetensors": (OrderedDict(), {}),
        "sharded": ({"model-00001-of-00002.safetensors": shard1,
                     "model-00002-of-00002.safetensors": shard2}, {}),
    }


def describe(t):
    flat = t.reshape(-1)
    values = flat.tolist() if not t.is_floating_point() else flat.to(torch.float64).tolist()
    return {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "values": values}


def describe_set(tensors, metadata, names):
    return {
        "metadata": metadata,
        "names": names,  # gridlock's order: shard order, then data-buffer order
        "tensors": {n: describe(t) for n, t in tensors.items()
                    if ST_NAMES[t.dtype] in GRIDLOCK_DTYPES},
        "unsupported": {n: ST_NAMES[t.dtype] for n, t in tensors.items()
                        if ST_NAMES[t.dtype] not in GRIDLOCK_DTYPES},
    }


def buffer_order(path):
    """Tensor names of a safetensors file sorted by data offset."""
    header = read_raw(path)[0]
    entries = [(v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__"]
    return [k for _, k in sorted(entries)]


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    expected = {}
    for name, (content, metadata) in fixture_sets().items():
        if name == "sharded":
            d = os.path.join(outdir, name)
            os.makedirs(d, exist_ok=True)
            weight_map, total, merged, names = {}, 0, OrderedDict(), []
            for shard, tensors in content.items():
                save_file(dict(tensors), os.path.join(d, shard), metadata={"format": "pt"})
                names += [n for n in buffer_order(os.path.join(d, shard))
                          if ST_NAMES[tensors[n].dtype] in GRIDLOCK_DTYPES]
                for n, t in tensors.items():
                    weight_map[n] = shard
                    total += t.numel() * t.element_size()
                    merged[n] = t
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                          indent=2, sort_keys=True)
                f.write("\n")
            expected[name] = describe_set(merged, {}, names)
        else:
            path = os.path.join(outdir, name)
            save_file(dict(content), path, metadata=metadata or None)
            names = [n for n in buffer_order(path) if ST_NAMES[content[n].dtype] in GRIDLOCK_DTYPES]
            expected[name] = describe_set(content, metadata, names)
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


def read_raw(path):
    """(header dict in file order, header length, data buffer bytes)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    return header, n, blob[8 + n:]


def check_fixtures():
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        fresh = sorted(os.path.relpath(os.path.join(r, f), tmp)
                       for r, _, fs in os.walk(tmp) for f in fs)
        committed = sorted(os.path.relpath(os.path.join(r, f), FIXTURES)
                           for r, _, fs in os.walk(FIXTURES) for f in fs)
        if fresh != committed:
            fail(f"fixture files differ: regenerated {fresh}, committed {committed}")
        for rel in fresh:
            a, b = os.path.join(tmp, rel), os.path.join(FIXTURES, rel)
            if rel.endswith(".safetensors"):
                ha, _, da = read_raw(a)
                hb, _, db = read_raw(b)
                # Plain dicts: key order is not part of the format.
                ha, hb = json.loads(json.dumps(ha)), json.loads(json.dumps(hb))
                if ha != hb:
                    fail(f"{rel}: header differs: regenerated {ha}, committed {hb}")
                if da != db:
                    fail(f"{rel}: data buffer differs")
            else:
                with open(a) as fa, open(b) as fb:
                    if json.load(fa) != json.load(fb):
                        fail(f"{rel}: regenerated content differs from the committed file")
    print(f"OK: {len(fresh)} fixture files under {FIXTURES} match a fresh regeneration")


# --- gridlock's writer, read by the safetensors library ---------------------

def values_equal(t, desc, label):
    if ST_NAMES[t.dtype] != desc["dtype"]:
        fail(f"{label}: dtype {ST_NAMES[t.dtype]}, expected {desc['dtype']}")
    if list(t.shape) != desc["shape"]:
        fail(f"{label}: shape {list(t.shape)}, expected {desc['shape']}")
    flat = t.reshape(-1)
    got = flat.tolist() if not t.is_floating_point() else flat.to(torch.float64).tolist()
    if got != desc["values"]:
        fail(f"{label}: values {got}, expected {desc['values']}")


def check_cpp_writer(tool, workdir):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        expected = json.load(f)["basic.safetensors"]
    out = os.path.join(workdir, "written_by_gridlock.safetensors")
    if os.path.exists(out):
        os.remove(out)
    subprocess.run([tool, "write", os.path.join(FIXTURES, "expected.json"), "basic.safetensors",
                    out], check=True)

    # Layout: the rules the Rust writer follows, which readers may rely on.
    header, n, data = read_raw(out)
    if n % 8 != 0:
        fail(f"{out}: header length {n} is not a multiple of 8")
    with open(out, "rb") as f:
        raw_header = f.read()[8:8 + n]
    if raw_header.rstrip(b" ") != raw_header.rstrip() or not raw_header.startswith(b"{"):
        fail(f"{out}: header is not JSON padded with spaces: {raw_header[-16:]!r}")
    keys = list(header.keys())
    if keys[0] != "__metadata__" or keys[1:] != list(expected["tensors"].keys()):
        fail(f"{out}: header keys {keys}, expected __metadata__ then the given order")
    offset = 0
    for k in keys[1:]:
        b, e = header[k]["data_offsets"]
        if b != offset:
            fail(f"{out}: tensor '{k}' starts at {b}, expected {offset} (contiguous layout)")
        offset = e
    if offset != len(data):
        fail(f"{out}: tensors end at {offset} but the data buffer has {len(data)} bytes")

    # Values through both Python entry points (load_file validates strictly).
    loaded = load_file(out)
    if set(loaded) != set(expected["tensors"]):
        fail(f"{out}: tensors {sorted(loaded)}, expected {sorted(expected['tensors'])}")
    for name, desc in expected["tensors"].items():
        values_equal(loaded[name], desc, f"{out}: '{name}'")
    with safe_open(out, framework="pt") as f:
        if f.metadata() != expected["metadata"]:
            fail(f"{out}: metadata {f.metadata()}, expected {expected['metadata']}")
        for name, desc in expected["tensors"].items():
            values_equal(f.get_tensor(name), desc, f"{out}: safe_open '{name}'")
    print(f"OK: {out} ({len(expected['tensors'])} tensors) reads correctly with safetensors "
          f"{__import__('safetensors').__version__}")


# --- tools/convert_pytorch_bin.py ---------------------------------------------

def tiny_neox_state():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(torch.float16)  # noqa: E731
    sd = OrderedDict()
    sd["gpt_neox.embed_in.weight"] = r(11, 4)
    for i in range(2):
        p = f"gpt_neox.layers.{i}."
        sd[p + "input_layernorm.weight"] = r(4)
        sd[p + "input_layernorm.bias"] = r(4)
        sd[p + "attention.bias"] = torch.tril(torch.ones(8, 8, dtype=torch.bool)).view(1, 1, 8, 8)
        sd[p + "attention.masked_bias"] = torch.tensor(-1e9)
        sd[p + "attention.rotary_emb.inv_freq"] = torch.tensor([1.0, 0.01])
        sd[p + "attention.query_key_value.weight"] = r(12, 4)
        sd[p + "attention.query_key_value.bias"] = r(12)
        sd[p + "attention.dense.weight"] = r(4, 4)
        sd[p + "attention.dense.bias"] = r(4)
    sd["gpt_neox.final_layer_norm.weight"] = r(4)
    sd["embed_out.weight"] = r(11, 4)
    skipped = [n for n in sd if n.endswith(("attention.bias", "masked_bias", "inv_freq"))]
    return sd, skipped, []


def tiny_gpt2_state():
    g = torch.Generator().manual_seed(1)
    wte = torch.randn(7, 4, generator=g)
    both = torch.randn(4, 4, generator=g)  # two parameters that are views of one storage
    sd = OrderedDict()
    sd["transformer.wte.weight"] = wte
    sd["transformer.h.0.attn.bias"] = torch.tril(torch.ones(5, 5, dtype=torch.bool)).view(
        1, 1, 5, 5)
    sd["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    sd["transformer.h.0.attn.c_attn.weight"] = both[:2]
    sd["transformer.h.0.attn.c_attn.bias"] = both[2:]
    sd["transformer.h.0.mlp.c_fc.weight"] = torch.randn(3, 4, generator=g).t()  # strided
    sd["transformer.wpe.weight"] = torch.arange(8, dtype=torch.float32).view(2, 4)
    sd["lm_head.weight"] = wte  # tied
    return sd, ["transformer.h.0.attn.bias", "transformer.h.0.attn.masked_bias"], [
        "lm_head.weight"]


def run_converter(src, dst, *extra):
    res = subprocess.run([sys.executable, CONVERTER, src, dst, *extra], capture_output=True,
                         text=True)
    if res.returncode != 0:
        fail(f"converter failed on {src}: {res.stderr.strip()}")
    return res.stdout


def check_converted(dst, state, skipped, aliases, tool, dtype=None):
    want = OrderedDict((n, t if dtype is None or not t.is_floating_point() else t.to(dtype))
                       for n, t in state.items() if n not in skipped and n not in aliases)
    out = os.path.join(dst, "model.safetensors")
    leftovers = [f for f in os.listdir(dst) if ".tmp." in f]
    if leftovers:
        fail(f"{dst}: temporary files left behind: {leftovers}")
    if not os.path.isfile(os.path.join(dst, "config.json")):
        fail(f"{dst}: config.json was not copied")
    loaded = load_file(out)
    if list(sorted(loaded)) != sorted(want):
        fail(f"{out}: tensors {sorted(loaded)}, expected {sorted(want)}")
    for n, t in want.items():
        if loaded[n].dtype != t.dtype or not torch.equal(loaded[n], t):
            fail(f"{out}: tensor '{n}' differs from the state dict")
    with safe_open(out, framework="pt") as f:
        if f.metadata() != {"format": "pt"}:
            fail(f"{out}: metadata {f.metadata()}, transformers needs {{'format': 'pt'}}")
    # gridlock reads the directory (SafetensorsCheckpoint) and gets the same values.
    res = subprocess.run([tool, "dump", dst], capture_output=True, text=True)
    if res.returncode != 0:
        fail(f"gridlock cannot read {dst}: {res.stderr.strip()}")
    dump = json.loads(res.stdout)
    if sorted(dump["names"]) != sorted(want):
        fail(f"gridlock reads tensors {dump['names']} from {dst}, expected {sorted(want)}")
    for n, t in want.items():
        values_equal(t, dump["tensors"][n], f"gridlock's read of {out}: '{n}'")


def check_convert(tool, workdir):
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    config = {"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 4}

    # 1. Single pytorch_model.bin (GPT-NeoX names, fp16, Pythia's buffers).
    neox, skipped, aliases = tiny_neox_state()
    src = os.path.join(workdir, "neox_bin")
    os.makedirs(src)
    torch.save(neox, os.path.join(src, "pytorch_model.bin"))
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(config, f)
    for writer in ("safetensors", "pure"):
        dst = os.path.join(workdir, f"neox_{writer}")
        run_converter(src, dst, "--writer", writer)
        check_converted(dst, neox, skipped, aliases, tool)
    dst = os.path.join(workdir, "neox_f32")
    run_converter(src, dst, "--dtype", "float32", "--writer", "pure")
    check_converted(dst, neox, skipped, aliases, tool, dtype=torch.float32)

    # 2. Sharded bins + index (GPT-2 names: tied lm_head, shared storage, strides).
    gpt2, skipped, aliases = tiny_gpt2_state()
    src = os.path.join(workdir, "gpt2_sharded")
    os.makedirs(src)
    names = list(gpt2)
    shards = {"pytorch_model-00001-of-00002.bin": names[:5] + ["lm_head.weight"],
              "pytorch_model-00002-of-00002.bin": names[5:-1]}
    weight_map = {}
    for shard, keys in shards.items():
        torch.save(OrderedDict((k, gpt2[k]) for k in keys), os.path.join(src, shard))
        weight_map.update({k: shard for k in keys})
    with open(os.path.join(src, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(config, f)
    for writer in ("safetensors", "pure"):
        dst = os.path.join(workdir, f"gpt2_{writer}")
        log = run_converter(src, dst, "--writer", writer)
        if "lm_head.weight -> transformer.wte.weight" not in log:
            fail(f"converter did not report the tied alias: {log}")
        check_converted(dst, gpt2, skipped, aliases, tool)

    # 3. Errors: no checkpoint, and refusing to overwrite.
    empty = os.path.join(workdir, "empty")
    os.makedirs(empty)
    res = subprocess.run([sys.executable, CONVERTER, empty], capture_output=True, text=True)
    if res.returncode == 0 or "neither pytorch_model.bin" not in res.stderr:
        fail(f"converter on an empty dir: rc {res.returncode}, stderr {res.stderr!r}")
    res = subprocess.run([sys.executable, CONVERTER, src, os.path.join(workdir, "gpt2_pure")],
                         capture_output=True, text=True)
    if res.returncode == 0 or "--force" not in res.stderr:
        fail(f"converter overwrote an existing model.safetensors: {res.stderr!r}")
    print("OK: convert_pytorch_bin.py output (both writers, single and sharded input) reads "
          "correctly with safetensors and gridlock")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["generate", "check-fixtures", "check-cpp-writer",
                                     "check-convert"])
    ap.add_argument("outdir", nargs="?", default=FIXTURES)
    ap.add_argument("--tool", help="path of the safetensors_tool binary")
    ap.add_argument("--workdir", help="scratch directory for written files")
    args = ap.parse_args()
    if args.mode == "generate":
        generate(args.outdir)
    elif args.mode == "check-fixtures":
        check_fixtures()
    else:
        if not args.tool or not args.workdir:
            ap.error(f"{args.mode} needs --tool and --workdir")
        (check_cpp_writer if args.mode == "check-cpp-writer" else check_convert)(args.tool,
                                                                                   args.workdir)


if __name__ == "__main__":
    main()
