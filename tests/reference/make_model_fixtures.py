#!/usr/bin/env python3
"""Model parity fixtures from Hugging Face transformers (the reference).

Builds tiny random-weight GPTNeoXForCausalLM and GPT2LMHeadModel models with
torch.manual_seed, saves each with save_pretrained(safe_serialization=True)
and writes, next to it, fixture.safetensors holding

  input_ids  i64 [2, 11]   token ids fed to the model
  targets    i64 [2, 11]   input_ids shifted left by one, -100 in the last column
  logits     f32 [2, 11, V]
  loss       f32 [1]       mean cross-entropy of logits against targets
  grad.<name> f32          d loss / d parameter, for EVERY named parameter
  logits_f64 f64 [2, 11, V] the same model evaluated in float64 (model.double()),
                           which separates implementation differences from f32
                           rounding (transformers computes GPT-NeoX's rotary
                           cos/sin in f32 even then, see the C++ test)

Loss definition (explicit, because HF shifts inside the model): transformers'
model(input_ids, labels=input_ids).loss is CE(logits[:, :-1], input_ids[:, 1:]);
that is the same number as cross_entropy(logits, targets, ignore_index=-100)
with the targets above, which is what gridlock's LanguageModel::loss computes.
The script asserts the two agree before writing anything.

Usage:
  make_model_fixtures.py --out DIR          write the fixtures into DIR/<name>/
  make_model_fixtures.py --check DIR [--test-binary PATH]
      regenerate into a temporary dir and compare with the committed fixtures
      in DIR (configs equal; weights and token ids bit-identical; logits and
      loss within 1e-5, gradients within 1e-4 of each tensor's largest
      magnitude, because another CPU's torch kernels round differently);
      then, with --test-binary (tests' test_models), run its export case,
      which loads every fixture with gridlock and writes it back with
      save_hf_model, and check that transformers' from_pretrained loads each
      written dir, holds the same weights and computes the same logits as
      the original model, bit for bit, and the fixture's logits and loss to
      1e-5 of scale. Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file

B, T = 2, 11

# (name, class, config kwargs). Sizes: (a) has head size 8 so rotary_pct 0.25
# rotates 2 dims; every vocabulary is a non-multiple of 64.
CONFIGS = [
    ("neox_parallel", "neox", dict(
        vocab_size=203, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=80, rotary_pct=0.25, rotary_emb_base=10000,
        max_position_embeddings=64, layer_norm_eps=1e-5, use_parallel_residual=True,
        hidden_act="gelu", tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)),
    ("neox_sequential", "neox", dict(
        vocab_size=101, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=56, rotary_pct=0.5, rotary_emb_base=500,
        max_position_embeddings=32, layer_norm_eps=1e-3, use_parallel_residual=False,
        hidden_act="gelu", tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)),
    ("gpt2", "gpt2", dict(
        vocab_size=203, n_embd=32, n_layer=2, n_head=4, n_positions=64,
        layer_norm_epsilon=1e-5, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
]


def build(kind, kwargs, seed):
    torch.manual_seed(seed)
    if kind == "neox":
        cfg = transformers.GPTNeoXConfig(attention_dropout=0.0, hidden_dropout=0.0,
                                         attn_implementation="eager", **kwargs)
        model = transformers.GPTNeoXForCausalLM(cfg)
    else:
        cfg = transformers.GPT2Config(attn_implementation="eager", **kwargs)
        model = transformers.GPT2LMHeadModel(cfg)
    # Weights far from HF's 0.02 init so that every nonlinearity (LayerNorm,
    # softmax, GELU) works away from its linear regime; norms randomised too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or ".ln_" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    model.eval()
    return model


def make_fixture(name, kind, kwargs, seed, out_dir):
    model = build(kind, kwargs, seed)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(seed + 1000)
    input_ids = torch.randint(0, vocab, (B, T), generator=g, dtype=torch.int64)
    targets = torch.full_like(input_ids, -100)
    targets[:, :-1] = input_ids[:, 1:]

    out = model(input_ids=input_ids, labels=input_ids)
    logits = out.logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1),
                                             ignore_index=-100)
    # HF's internal shift and our explicit targets are one loss definition.
    assert torch.allclose(loss, out.loss, rtol=1e-6, atol=0), (loss, out.loss)
    model.zero_grad()
    loss.backward()

    tensors = {
        "input_ids": input_ids.contiguous(),
        "targets": targets.contiguous(),
        "logits": logits.detach().float().contiguous(),
        "loss": loss.detach().float().reshape(1).contiguous(),
    }
    # named_parameters() lists a tied weight once (GPT-2: transformer.wte.weight;
    # its gradient includes the lm_head contribution).
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.detach().float().contiguous()
    with torch.no_grad():
        tensors["logits_f64"] = model.double()(input_ids=input_ids).logits.contiguous()
        model.float()

    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    gen_cfg = os.path.join(d, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)  # not needed by either side; keeps the fixture minimal
    save_file(tensors, os.path.join(d, "fixture.safetensors"), metadata={"format": "pt"})
    return d


def generate(out_dir):
    for i, (name, kind, kwargs) in enumerate(CONFIGS):
        make_fixture(name, kind, kwargs, 1234 + i, out_dir)


# Regenerating on another CPU runs torch's f32 kernels down other code paths
# (AVX2 against AVX-512 GEMM and reductions), which moves the computed
# tensors by a few ulps of their scale; a stale fixture (a changed config,
# seed, input or loss definition) moves them by order one. So what the seed
# alone determines (weights, token ids) must be bit-identical, and computed
# tensors must agree to this fraction of the tensor's largest magnitude, the
# same bounds the C++ parity tests hold gridlock to (tests/models).
def computed_tolerance(name):
    return 1e-4 if name.startswith("grad.") else 1e-5


def scaled_diff(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() if b.numel() else 0.0


def compare_tensors(label, got, ref, computed, errors):
    if set(got) != set(ref):
        errors.append(f"{label}: tensor names differ: only new {sorted(set(got) - set(ref))}, "
                      f"only committed {sorted(set(ref) - set(got))}")
        return
    worst = 0.0
    for k in ref:
        a, b = got[k], ref[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            errors.append(f"{label}: {k}: {a.dtype}{list(a.shape)} vs committed {b.dtype}{list(b.shape)}")
        elif not computed or not a.is_floating_point():
            if not torch.equal(a, b):
                errors.append(f"{label}: {k}: differs from the committed tensor (must be bit-identical)")
        else:
            d = scaled_diff(a, b)
            worst = max(worst, d)
            if not d <= computed_tolerance(k):
                errors.append(f"{label}: {k}: max |diff| / max |committed| {d:.3e} > "
                              f"{computed_tolerance(k):.0e}")
    return worst


def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    cfg.pop("transformers_version", None)
    return cfg


def check_fixtures(committed, tmp, errors):
    generate(tmp)
    for name, _, _ in CONFIGS:
        new, old = os.path.join(tmp, name), os.path.join(committed, name)
        if not os.path.isdir(old):
            errors.append(f"{name}: no committed fixture at {old}")
            continue
        if load_config(os.path.join(new, "config.json")) != load_config(os.path.join(old, "config.json")):
            errors.append(f"{name}: config.json differs from the committed one")
        compare_tensors(f"{name}/model.safetensors", load_file(os.path.join(new, "model.safetensors")),
                        load_file(os.path.join(old, "model.safetensors")), False, errors)
        worst = compare_tensors(f"{name}/fixture.safetensors",
                                load_file(os.path.join(new, "fixture.safetensors")),
                                load_file(os.path.join(old, "fixture.safetensors")), True, errors)
        print(f"regenerated {name}: weights and ids identical, computed tensors within "
              f"{worst or 0.0:.1e} of their scale")


def check_export(committed, test_binary, tmp, errors):
    """gridlock loads each fixture and writes it back; transformers loads that."""
    export = os.path.join(tmp, "exported")
    os.makedirs(export)
    env = dict(os.environ, GRIDLOCK_MODELS_FIXTURES=committed, GRIDLOCK_MODELS_EXPORT_DIR=export)
    r = subprocess.run([test_binary, "--test-case=models: export fixtures with save_hf_model"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        errors.append(f"{test_binary} export case failed (rc {r.returncode}):\n{r.stdout}")
        return
    for name, kind, _ in CONFIGS:
        d = os.path.join(export, name)
        cls = transformers.GPTNeoXForCausalLM if kind == "neox" else transformers.GPT2LMHeadModel
        try:
            model = cls.from_pretrained(d, attn_implementation="eager")
        except Exception as e:  # noqa: BLE001 - report any load failure as a test failure
            errors.append(f"{name}: transformers could not load {d}: {e}")
            continue
        model.eval()
        original = cls.from_pretrained(os.path.join(committed, name), attn_implementation="eager")
        sd, ref_sd = model.state_dict(), original.state_dict()
        for k, v in ref_sd.items():
            if k not in sd or not torch.equal(sd[k], v):
                errors.append(f"{name}: {k} differs after the gridlock round trip")
        fx = load_file(os.path.join(committed, name, "fixture.safetensors"))
        with torch.no_grad():
            out = model(input_ids=fx["input_ids"], labels=fx["input_ids"])
            ref = original(input_ids=fx["input_ids"], labels=fx["input_ids"])
        # Same weights, same process: the round trip must not move a bit.
        if not torch.equal(out.logits, ref.logits) or not torch.equal(out.loss, ref.loss):
            errors.append(f"{name}: the exported model's logits or loss differ from the original's")
        # And against the committed fixture, by scale (it may come from another CPU).
        dl = scaled_diff(out.logits, fx["logits"])
        dloss = scaled_diff(out.loss.reshape(1), fx["loss"])
        if not (dl <= 1e-5 and dloss <= 1e-5):
            errors.append(f"{name}: logits of the exported model differ from the fixture "
                          f"(max |diff| / max |logit| {dl:.3e}, loss {dloss:.3e})")
        print(f"transformers loaded gridlock's {name}: logits identical to the original model's, "
              f"within {dl:.2e} of the fixture's scale (loss {dloss:.2e})")
    # Models gridlock initialised itself, with the logits gridlock computed.
    made = sorted(n for n in os.listdir(export) if n.startswith("gridlock_"))
    if len(made) != 4:
        errors.append(f"expected 4 gridlock-made models in {export}, found {made}")
    for name in made:
        d = os.path.join(export, name)
        with open(os.path.join(d, "config.json")) as f:
            model_type = json.load(f)["model_type"]
        cls = transformers.GPTNeoXForCausalLM if model_type == "gpt_neox" else transformers.GPT2LMHeadModel
        try:
            model = cls.from_pretrained(d, attn_implementation="eager")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: transformers could not load {d}: {e}")
            continue
        model.eval()
        ours = load_file(os.path.join(d, "gridlock_logits.safetensors"))
        with torch.no_grad():
            logits = model(input_ids=ours["input_ids"]).logits
        # Relative to the tensor's scale, as the C++ parity tests.
        scaled = ((logits - ours["logits"]).abs().max() / ours["logits"].abs().max()).item()
        if not scaled <= 1e-5:
            errors.append(f"{name}: transformers' logits differ from gridlock's "
                          f"(max |diff| / max |logit| {scaled:.3e})")
        print(f"transformers ran gridlock-initialised {name}: max |diff| / max |logit| {scaled:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write fixtures into this directory")
    ap.add_argument("--check", help="compare a fresh regeneration with the fixtures in this directory")
    ap.add_argument("--test-binary", help="test_models binary for the save_hf_model export check")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one summation order: bit-identical regenerations
    if args.out:
        generate(args.out)
        print(f"wrote {len(CONFIGS)} model fixtures to {args.out}")
        return 0
    if not args.check:
        ap.error("give --out DIR or --check DIR")
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        check_fixtures(args.check, os.path.join(tmp, "regen"), errors)
        if args.test_binary:
            check_export(os.path.abspath(args.check), args.test_binary, tmp, errors)
    for e in errors:
        print("MISMATCH: " + e, file=sys.stderr)
    print("model fixtures: " + ("FAILED" if errors else "OK"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
