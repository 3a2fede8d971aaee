#!/usr/bin/env python3
"""Convert a Hugging Face checkpoint stored as pytorch_model.bin into model.safetensors.

Pythia's intermediate checkpoints on the Hub (revisions "step1000", ...) ship
only pytorch_model.bin, a torch zip/pickle that gridlock does not parse; this
script turns such a directory into the model.safetensors that gridlock (and
transformers) read natively. It needs only Python and torch (Debian's
python3-torch works: run it with /usr/bin/python3).

    python3 tools/convert_pytorch_bin.py SRC_DIR [DST_DIR] [--dtype float32]

SRC_DIR holds pytorch_model.bin, or the shards listed by
pytorch_model.bin.index.json ({"weight_map": {tensor: shard}}). DST_DIR
(default SRC_DIR) receives model.safetensors plus copies of config.json and
the tokenizer files found next to it.

What it does to the tensors:
  - drops the non-parameter buffers old GPT-NeoX / GPT-2 checkpoints carry:
    *.attention.bias (bool causal mask), *.attention.masked_bias,
    *.rotary_emb.inv_freq, and GPT-2's *.attn.bias / *.attn.masked_bias;
  - writes tied tensors once (two names for the same view: the first name in
    the state dict wins, e.g. transformer.wte.weight over lm_head.weight, as
    transformers does), and copies tensors that merely share storage;
  - keeps each tensor's dtype unless --dtype converts the floating ones.

The file is written with the `safetensors` package when it is importable,
else with the small writer below (same layout: u64 little-endian header
length, JSON header padded with spaces to 8 bytes, contiguous data); both
are read by gridlock and by `safetensors`. Output goes to a temporary file
that is renamed into place, so an interrupted run leaves no partial file.
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys

import torch

# Buffers, not parameters: recomputed by every implementation, never trained.
SKIP_PATTERNS = [
    re.compile(r"(^|\.)attention\.(bias|masked_bias)$"),
    re.compile(r"(^|\.)rotary_emb\.inv_freq$"),
    re.compile(r"(^|\.)attn\.(bias|masked_bias)$"),
]

# Files copied beside the weights when DST_DIR differs from SRC_DIR.
SIDE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.json", "merges.txt"]

DTYPE_NAMES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int32: "I32", torch.int64: "I64", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}

TARGET_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def fail(msg):
    sys.exit(f"convert_pytorch_bin: {msg}")


def torch_load(path):
    # weights_only refuses arbitrary pickled code (torch >= 1.13).
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # older torch without weights_only
        return torch.load(path, map_location="cpu")


def read_state_dict(src):
    """All tensors of SRC in state-dict order (shards in index order)."""
    single = os.path.join(src, "pytorch_model.bin")
    index = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.isfile(single):
        shards = ["pytorch_model.bin"]
    elif os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            fail(f"{index}: no 'weight_map' object")
        shards = list(dict.fromkeys(weight_map.values()))
    else:
        fail(f"{src}: neither pytorch_model.bin nor pytorch_model.bin.index.json found")
    state = {}
    for shard in shards:
        path = os.path.join(src, shard)
        if not os.path.isfile(path):
            fail(f"{path}: shard listed in the index does not exist")
        sd = torch_load(path)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        for name, t in sd.items():
            if not isinstance(t, torch.Tensor):
                fail(f"{path}: entry '{name}' is a {type(t).__name__}, not a tensor")
            if name in state:
                fail(f"{path}: tensor '{name}' appears in two shards")
            state[name] = t
    return state


def prepare(state, dtype):
    """Drops buffers and aliases; returns ([(name, contiguous tensor)], skipped, aliases)."""
    out, skipped, aliases = [], [], []
    views = {}  # identity of a view -> the name written for it
    storages = {}  # storage address -> number of kept tensors using it
    for name, t in state.items():
        if any(p.search(name) for p in SKIP_PATTERNS):
            skipped.append(name)
            continue
        key = (t.storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
               t.dtype)
        if t.numel() > 0 and key in views:
            aliases.append((name, views[key]))
            continue
        views[key] = name
        storages[key[0]] = storages.get(key[0], 0) + 1
        out.append((name, t))
    result = []
    for name, t in out:
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        # Tensors sharing storage with another kept tensor are copied:
        # safetensors stores each tensor in its own byte range.
        shared = storages.get(t.storage().data_ptr(), 0) > 1
        t = t.contiguous()
        result.append((name, t.clone() if shared else t))
    return result, skipped, aliases


def tensor_bytes(t):
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def write_pure(path, tensors, metadata):
    """A minimal safetensors writer: header in the given order, contiguous data."""
    if sys.byteorder != "little":
        fail("the pure-python writer assumes a little-endian host")
    header = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tensors:
        if t.dtype not in DTYPE_NAMES:
            fail(f"tensor '{name}': dtype {t.dtype} has no safetensors name")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # data starts 8-byte aligned, as in Rust
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, t in tensors:
            f.write(tensor_bytes(t))
        f.flush()
        os.fsync(f.fileno())


def write_safetensors(path, tensors, metadata, writer):
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        if writer == "safetensors":
            from safetensors.torch import save_file
            save_file(dict(tensors), tmp, metadata=metadata)
        else:
            write_pure(tmp, tensors, metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="directory with pytorch_model.bin or pytorch_model.bin.index.json")
    ap.add_argument("dst", nargs="?", help="output directory (default: src)")
    ap.add_argument("--dtype", choices=["keep"] + list(TARGET_DTYPES), default="keep",
                    help="convert floating tensors to this dtype (default: keep as stored)")
    ap.add_argument("--writer", choices=["auto", "safetensors", "pure"], default="auto",
                    help="auto: the safetensors package if importable, else the built-in writer")
    ap.add_argument("--force", action="store_true", help="overwrite an existing model.safetensors")
    args = ap.parse_args(argv)

    src, dst = args.src, args.dst or args.src
    if not os.path.isdir(src):
        fail(f"{src}: not a directory")
    os.makedirs(dst, exist_ok=True)
    out_path = os.path.join(dst, "model.safetensors")
    if os.path.exists(out_path) and not args.force:
        fail(f"{out_path} exists (use --force to overwrite)")
    writer = args.writer
    if writer == "auto":
        try:
            import safetensors.torch  # noqa: F401
            writer = "safetensors"
        except ImportError:
            writer = "pure"

    state = read_state_dict(src)
    tensors, skipped, aliases = prepare(state, TARGET_DTYPES.get(args.dtype))
    # transformers refuses safetensors files whose metadata lacks format=pt.
    write_safetensors(out_path, tensors, {"format": "pt"}, writer)

    if os.path.abspath(dst) != os.path.abspath(src):
        for name in SIDE_FILES:
            if os.path.isfile(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    nbytes = sum(t.numel() * t.element_size() for _, t in tensors)
    print(f"{out_path}: {len(tensors)} tensors, {nbytes / 1e6:.1f} MB ({writer} writer); "
          f"skipped {len(skipped)} buffers; {len(aliases)} tied aliases written once"
          + "".join(f"\n  {a} -> {b}" for a, b in aliases))


if __name__ == "__main__":
    main()
