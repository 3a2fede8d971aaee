#!/usr/bin/env python3
"""GGUF export against llama.cpp's own Python package (gguf-py, `gguf` on PyPI).

1. A tiny random GPT-NeoX is made and saved by transformers (dims multiples
   of 32, non-zero biases), with the tokenizer fixture next to it.
2. gridlock_export writes it as f32, f16, q8_0, q4_0, q4_1 and q4_0 --pure.
   gguf.GGUFReader parses each file; every tensor's name, dims (ne0 first),
   ggml type and bytes must be what llama.cpp's converter would write:
   the HF weight with QKV rows re-ordered [heads, 3, hs] -> [3, heads, hs]
   (numpy here), encoded by numpy (f32/f16) or gguf.quants.quantize (Q types:
   bit-identical blocks). Key metadata and the tokenizer arrays are checked.
3. gridlock_export --dequantize (our read-back) must equal
   gguf.quants.dequantize of our bytes with the QKV order undone.
4. The other direction: a GGUF written by gguf.GGUFWriter (q8_0 weights,
   alignment 64) is read by gridlock_export --dequantize.
5. The command line: usage errors exit 2, the QAT-scheme refusal exits 1 and
   says why.
Exits non-zero on the first mismatch, printing what differed.
"""
import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import load_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "fixtures", "tokenizer", "neox", "tokenizer.json")
NH, C, HS, L, FF, V = 4, 64, 16, 2, 128, 2048

TYPES = {"f32": QT.F32, "f16": QT.F16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0, "q4_1": QT.Q4_1}


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def make_model(d):
    cfg = GPTNeoXConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=NH,
                        intermediate_size=FF, max_position_embeddings=64, rotary_pct=0.25,
                        use_parallel_residual=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    m = GPTNeoXForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    m.save_pretrained(d, safe_serialization=True)
    shutil.copy(TOKENIZER, os.path.join(d, "tokenizer.json"))
    return {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()
            if not k.endswith((".masked_bias", ".attention.bias", "rotary_emb.inv_freq"))}


def gguf_name(hf):
    if hf == "gpt_neox.embed_in.weight":
        return "token_embd.weight"
    if hf == "embed_out.weight":
        return "output.weight"
    if hf.startswith("gpt_neox.final_layer_norm."):
        return "output_norm." + hf.rsplit(".", 1)[1]
    sub = {"input_layernorm": "attn_norm", "attention.query_key_value": "attn_qkv",
           "attention.dense": "attn_output", "post_attention_layernorm": "ffn_norm",
           "mlp.dense_h_to_4h": "ffn_up", "mlp.dense_4h_to_h": "ffn_down"}
    parts = hf.split(".")
    layer, module, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    return f"blk.{layer}.{sub[module]}.{suffix}"


def qkv_to_gguf(w):  # the converter's GPTNeoXModel.modify_tensors
    if w.ndim == 2:
        r = w.reshape(NH, 3, HS, w.shape[1])
        return np.concatenate([r[:, 0].reshape(-1, w.shape[1]), r[:, 1].reshape(-1, w.shape[1]),
                               r[:, 2].reshape(-1, w.shape[1])], axis=0)
    r = w.reshape(NH, 3, HS)
    return np.concatenate([r[:, 0].reshape(-1), r[:, 1].reshape(-1), r[:, 2].reshape(-1)])


def qkv_from_gguf(w):
    if w.ndim == 2:
        return w.reshape(3, NH, HS, w.shape[1]).transpose(1, 0, 2, 3).reshape(-1, w.shape[1])
    return w.reshape(3, NH, HS).transpose(1, 0, 2).reshape(-1)


def expected(sd, pure, qtype):
    """name -> (ggml type, ne, bytes, gguf-space f32 array) as llama.cpp would store it."""
    out = {}
    for hf, w in sd.items():
        name = gguf_name(hf)
        g = qkv_to_gguf(w) if ".attn_qkv." in name else w
        if g.ndim == 1:
            t = QT.F32
        elif name == "output.weight" and qtype in (QT.Q4_0, QT.Q4_1, QT.Q8_0) and not pure:
            t = QT.Q8_0
        else:
            t = qtype
        if t == QT.F32:
            b = g.astype(np.float32).tobytes()
        elif t == QT.F16:
            b = g.astype(np.float16).tobytes()
        else:
            b = gguf.quants.quantize(g, t).tobytes()
        out[name] = (t, list(reversed(g.shape)), b, g)
    return out


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        fail(f"metadata key {key} missing")
    return f.contents()


def run(cmd, expect_rc=0, expect_text=None):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect_rc:
        fail(f"{' '.join(cmd)}: exit {p.returncode}, expected {expect_rc}\n{p.stdout}{p.stderr}")
    if expect_text and expect_text not in p.stderr:
        fail(f"{' '.join(cmd)}: stderr lacks {expect_text!r}: {p.stderr}")
    return p


def check_export(tool, model_dir, sd, work, tname, pure):
    qtype = TYPES[tname]
    out = os.path.join(work, f"model-{tname}{'-pure' if pure else ''}.gguf")
    run([tool, model_dir, out, "--type", tname] + (["--pure"] if pure else []))
    r = gguf.GGUFReader(out)
    exp = expected(sd, pure, qtype)
    got = {t.name: t for t in r.tensors}
    if set(got) != set(exp):
        fail(f"{out}: tensor names {sorted(set(got) ^ set(exp))} differ")
    for name, (t, ne, b, g) in exp.items():
        rt = got[name]
        if rt.tensor_type != t:
            fail(f"{out}: {name} type {rt.tensor_type!r}, expected {t!r}")
        if [int(x) for x in rt.shape] != ne:
            fail(f"{out}: {name} ne {list(rt.shape)}, expected {ne}")
        raw = np.asarray(rt.data).tobytes()
        if raw != b:
            fail(f"{out}: {name} ({t.name}) bytes differ from the reference encoding")
    tokenizer = json.load(open(TOKENIZER))
    checks = {"general.architecture": "gptneox", "gptneox.block_count": L,
              "gptneox.embedding_length": C, "gptneox.feed_forward_length": FF,
              "gptneox.attention.head_count": NH, "gptneox.context_length": 64,
              "gptneox.rope.dimension_count": 4, "gptneox.use_parallel_residual": True,
              "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.eos_token_id": 0,
              "general.quantization_version": 2, "general.alignment": 32}
    for k, v in checks.items():
        if field(r, k) != v:
            fail(f"{out}: {k} = {field(r, k)!r}, expected {v!r}")
    eps = field(r, "gptneox.attention.layer_norm_epsilon")
    if abs(eps - 1e-5) > 1e-10:
        fail(f"{out}: layer_norm_epsilon {eps}")
    tokens = field(r, "tokenizer.ggml.tokens")
    if len(tokens) != V:
        fail(f"{out}: {len(tokens)} tokens, expected {V}")
    for tok, i in tokenizer["model"]["vocab"].items():
        if tokens[i] != tok:
            fail(f"{out}: token {i} is {tokens[i]!r}, expected {tok!r}")
    merges = field(r, "tokenizer.ggml.merges")
    want = [" ".join(m) if isinstance(m, list) else m for m in tokenizer["model"]["merges"]]
    if merges != want:
        fail(f"{out}: merges differ")
    if len(field(r, "tokenizer.ggml.token_type")) != V:
        fail(f"{out}: token_type length")

    # Our read-back equals the reference dequantization of our own bytes.
    st = os.path.join(work, f"back-{tname}{'-pure' if pure else ''}.safetensors")
    run([tool, "--dequantize", out, st])
    back = load_file(st)
    for hf in sd:
        name = gguf_name(hf)
        rt = got[name]
        ref = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type).astype(np.float32)
        ref = ref.reshape(exp[name][3].shape)
        if ".attn_qkv." in name:
            ref = qkv_from_gguf(ref)
        if back[hf].shape != sd[hf].shape:
            fail(f"{st}: {hf} shape {back[hf].shape}, expected {sd[hf].shape}")
        if not np.array_equal(back[hf], ref):
            d = np.max(np.abs(back[hf] - ref))
            fail(f"{st}: {hf} differs from gguf.quants.dequantize by up to {d}")
        if rt.tensor_type == QT.F32 and not np.array_equal(back[hf], sd[hf]):
            fail(f"{st}: f32 {hf} is not the model's tensor")
    print(f"ok {tname}{' --pure' if pure else ''}: {len(exp)} tensors")


def check_python_written(tool, sd, work):
    path = os.path.join(work, "from_gguf_py.gguf")
    w = gguf.GGUFWriter(path, "gptneox")
    w.data_alignment = 64
    w.add_custom_alignment(64)
    w.add_block_count(L)
    w.add_embedding_length(C)
    w.add_head_count(NH)
    w.add_context_length(64)
    w.add_string("gridlock.test", "written by gguf-py")
    want = {}
    for hf, t in sd.items():
        name = gguf_name(hf)
        g = qkv_to_gguf(t) if ".attn_qkv." in name else t
        if g.ndim == 2:
            q = gguf.quants.quantize(g, QT.Q8_0)
            w.add_tensor(name, q, raw_dtype=QT.Q8_0)
            deq = gguf.quants.dequantize(q, QT.Q8_0).reshape(g.shape)
        else:
            w.add_tensor(name, g)
            deq = g
        want[hf] = qkv_from_gguf(deq) if ".attn_qkv." in name else deq
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    st = os.path.join(work, "from_gguf_py.safetensors")
    run([tool, "--dequantize", path, st])
    back = load_file(st)
    for hf, v in want.items():
        if not np.array_equal(back[hf], v.astype(np.float32)):
            fail(f"{path}: our reader's {hf} differs from gguf-py's")
    print(f"ok: read a gguf-py-written file ({len(want)} tensors, alignment 64)")


def check_cli(tool, model_dir, work):
    out = os.path.join(work, "cli.gguf")
    run([tool, model_dir, out, "--type", "q5_k"], 2, "unknown type 'q5_k'")
    run([tool, model_dir], 2, "expected MODEL_DIR and OUT.gguf")
    run([tool, model_dir, out, "--bogus"], 2, "unknown option '--bogus'")
    run([tool, model_dir, out, "--type", "q4_0", "--qat-scheme", "q8_0"], 1,
        "QAT only pays off when deployment uses the same scheme")
    if os.path.exists(out):
        fail("a refused export left a file behind")
    run([tool, model_dir, out, "--type", "q4_0", "--qat-scheme", "q8_0", "--force"])
    run([tool, model_dir, out, "--type", "q4_0", "--qat-scheme", "q4_0"])
    run([tool, os.path.join(work, "missing"), out], 1, "missing")
    print("ok: command line")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="gridlock_export")
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model_dir = os.path.join(a.workdir, "tiny_neox")
    sd = make_model(model_dir)
    print(f"gguf {importlib.metadata.version('gguf')}, numpy {np.__version__}")
    for tname in TYPES:
        check_export(a.tool, model_dir, sd, a.workdir, tname, False)
    check_export(a.tool, model_dir, sd, a.workdir, "q4_0", True)
    check_python_written(a.tool, sd, a.workdir)
    check_cli(a.tool, model_dir, a.workdir)
    print("all gguf interop checks passed")


if __name__ == "__main__":
    main()
