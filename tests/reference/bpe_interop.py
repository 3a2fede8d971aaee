#!/usr/bin/env python3
"""gridlock's BPE trainer and token shards against Hugging Face `tokenizers`,
and the gridlock_tokenize command line.

  bpe_interop.py check --tool GRIDLOCK_TOKENIZE --workdir DIR    (label reference)
      For several corpora and settings, trains with `gridlock_tokenize
      train-bpe` and with tokenizers' BpeTrainer configured as
      data/bpe_trainer.h says, and requires the two tokenizer.json texts to
      be identical (byte for byte: same vocab, same merges in the same
      order, same layout). Then loads gridlock's file with
      tokenizers.Tokenizer.from_str and requires `gridlock_tokenize encode`
      to give HF's ids (after the <|endoftext|> that starts each document).
      Corpora: the King James Bible chapters (data/corpus.h's text and
      training split), the tokenizer fixture's multilingual training corpus
      (tests/reference/make_tokenizer_fixture.py), and random texts over tiny
      alphabets, which make the same token string from different splits and
      so exercise the trainer's id reuse and repeated-merge bookkeeping.
      Also prints the FNV-1a 64 hash of HF's KJV tokenizer.json (vocab 8192)
      that tests/data/test_corpus.cpp pins.
  bpe_interop.py cli --tool GRIDLOCK_TOKENIZE --workdir DIR      (label cpu)
      The command line without Python packages: usage errors (one line,
      exit 2), runtime errors (exit 1), train-bpe -> encode -> info, and the
      shard bytes written by encode.
"""
import argparse
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, expect_rc=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: {' '.join(cmd[:4])} ... exited {p.returncode}, expected {expect_rc}\n"
                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def read_shard(path):
    """GLTOKENS shard -> (vocab, ids); layout in data/token_shard.h."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, width, count, vocab = struct.unpack_from("<8sIIQQ", data, 0)
    assert magic == b"GLTOKENS" and version == 1 and width in (2, 4), (path, magic, version, width)
    assert len(data) == 32 + count * width, (path, len(data), count, width)
    fmt = "<%d%s" % (count, "H" if width == 2 else "I")
    return vocab, list(struct.unpack_from(fmt, data, 32))


def write_docs(workdir, name, docs):
    d = os.path.join(workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    paths = []
    for i, doc in enumerate(docs):
        p = os.path.join(d, f"doc{i:05d}.txt")
        with open(p, "w", encoding="utf-8", newline="") as f:
            f.write(doc)
        paths.append(p)
    return paths


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


# ------------------------------------------------------------------ corpora

def kjv_chapters():
    """data/corpus.cpp's parse_bible_text, in Python."""
    raw = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    chapters, key = [], None
    for line in raw.split("\n"):
        line = line.rstrip(" \r\t")
        if not line:
            continue
        ref, text = line.split(" ", 1)
        m = re.fullmatch(r"(.*?[A-Za-z])(\d+):(\d+)", ref)
        assert m, line
        k = (m.group(1), int(m.group(2)))
        if k != key:
            chapters.append("")
            key = k
        chapters[-1] += text + "\n"
    assert len(chapters) == 1189, len(chapters)
    return chapters


def is_validation(k, f):
    return math.floor((k + 1) * f + 1e-9) > math.floor(k * f + 1e-9)


def tiny_alphabet_corpus(seed, alphabet, n_docs):
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14)))
                 for _ in range(rng.randrange(5, 60))]
        docs.append(rng.choice([" ", "  ", "\n"]).join(words))
    return docs


# ------------------------------------------------------------------ check

def hf_train(docs, vocab, specials, min_frequency):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def first_difference(ours, theirs):
    import json
    a, b = json.loads(ours), json.loads(theirs)
    for key in ("vocab", "merges"):
        x, y = a["model"][key], b["model"][key]
        if key == "vocab":
            x, y = sorted(x.items(), key=lambda kv: kv[1]), sorted(y.items(), key=lambda kv: kv[1])
        for i, (u, v) in enumerate(zip(x, y)):
            if u != v:
                return f"{key}[{i}]: gridlock {u!r}, tokenizers {v!r}"
        if len(x) != len(y):
            return f"{key}: gridlock has {len(x)}, tokenizers {len(y)}"
    return "layout only (vocab and merges agree)"


def check_case(tool, workdir, name, docs, vocab, specials=("<|endoftext|>",), min_frequency=2,
               encode_texts=()):
    from tokenizers import Tokenizer
    files = write_docs(workdir, name, docs)
    out = os.path.join(workdir, f"{name}.tokenizer.json")
    cmd = [tool, "train-bpe", "--vocab", str(vocab), "--min-frequency", str(min_frequency), "-o", out]
    for s in specials:
        cmd += ["--special", s]
    if not specials:
        cmd.append("--no-special")
    run(cmd + files)
    with open(out, encoding="utf-8") as f:
        ours = f.read()
    hf = hf_train(docs, vocab, list(specials), min_frequency)
    theirs = hf.to_str(pretty=True)
    if ours != theirs:
        sys.exit(f"FAIL {name}: tokenizer.json differs from tokenizers': {first_difference(ours, theirs)}")
    print(f"ok {name}: {len(docs)} texts, vocab {hf.get_vocab_size()}: identical tokenizer.json "
          f"({len(ours)} bytes)")
    if not encode_texts or "<|endoftext|>" not in specials:
        return theirs
    loaded = Tokenizer.from_str(ours)
    eot = loaded.token_to_id("<|endoftext|>")
    tfiles = write_docs(workdir, name + "_encode", encode_texts)
    prefix = os.path.join(workdir, name + "_encoded")
    run([tool, "encode", "--tokenizer", out, "-o", prefix] + tfiles)
    vocab_size, ids = read_shard(prefix + ".gltok")
    expected = []
    for t in encode_texts:
        expected += [eot] + loaded.encode(t).ids
    if ids != expected:
        i = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
        sys.exit(f"FAIL {name}: gridlock encode differs from tokenizers at token {i}: "
                 f"{ids[i:i + 8]} vs {expected[i:i + 8]} ({len(ids)} vs {len(expected)} ids)")
    assert vocab_size == loaded.get_vocab_size(), (vocab_size, loaded.get_vocab_size())
    print(f"ok {name}: encode of {len(encode_texts)} texts = tokenizers' ids ({len(ids)} tokens)")
    return theirs


def check(tool, workdir):
    sys.path.insert(0, HERE)
    import make_tokenizer_fixture as fixture

    chapters = kjv_chapters()
    train = [c for k, c in enumerate(chapters) if not is_validation(k, 0.05)]
    val = [c for k, c in enumerate(chapters) if is_validation(k, 0.05)]
    fixture_samples = [t for _, t in fixture.test_samples()][:400]
    kjv = check_case(tool, workdir, "kjv_v8192", train, 8192, encode_texts=val + fixture_samples)
    print(f"kjv_v8192 tokenizer.json FNV-1a 64: 0x{fnv1a64(kjv.encode('utf-8')):016x} "
          "(tests/data/test_corpus.cpp kKjvTokenizerFnv)")
    check_case(tool, workdir, "kjv_v300_nomin", train, 300, min_frequency=0)
    corpus = fixture.training_corpus()
    check_case(tool, workdir, "fixture_v2000", corpus, 2000, encode_texts=fixture_samples)
    check_case(tool, workdir, "fixture_v2000_2special", corpus, 2000,
               specials=("<|endoftext|>", "<|padding|>"))
    check_case(tool, workdir, "fixture_v4000_nospecial_min0", corpus, 4000, specials=(), min_frequency=0)
    # Special tokens that are also a byte symbol ("e") or a merge result
    # ("Ġthe"): tokenizers gives them the special id and reuses it.
    check_case(tool, workdir, "fixture_v1000_odd_specials", corpus, 1000,
               specials=("<|endoftext|>", "\u0120the", "e", "<|pad|>"))
    for seed, alphabet in [(1, "ab"), (2, "abc"), (3, "aab "), (4, "xyzé")]:
        docs = tiny_alphabet_corpus(seed, alphabet, 200)
        check_case(tool, workdir, f"tiny_{seed}", docs, 1500, min_frequency=0,
                   encode_texts=tiny_alphabet_corpus(seed + 100, alphabet, 20))
    print("bpe_interop check: all ok")


# ------------------------------------------------------------------ cli

def cli(tool, workdir):
    def usage_error(args, needle):
        p = run([tool] + args, expect_rc=2)
        assert p.stderr.count("\n") == 1 and needle in p.stderr, (args, p.stderr)

    usage_error([], "missing COMMAND")
    usage_error(["frobnicate"], "unknown command 'frobnicate'")
    usage_error(["train-bpe", "-o", "x.json", "a.txt"], "--vocab N is required")
    usage_error(["train-bpe", "--vocab", "100", "-o", "x.json", "a.txt"], "is below 257")
    usage_error(["train-bpe", "--vocab", "300", "a.txt"], "-o TOKENIZER.json is required")
    usage_error(["train-bpe", "--vocab", "300", "-o", "x.json"], "no input FILES")
    usage_error(["train-bpe", "--vocab", "abc", "-o", "x.json", "a.txt"], "--vocab")
    usage_error(["train-bpe", "--bogus", "1"], "unknown option '--bogus'")
    usage_error(["encode", "-o", "p", "a.txt"], "--tokenizer TOKENIZER.json is required")
    usage_error(["encode", "--tokenizer", "t.json", "-o", "p", "--val-fraction", "0.7", "a"], "out of range")
    usage_error(["encode", "--tokenizer", "t.json", "-o", "p", "--val-fraction", "0.05", "a", "b"],
                "puts 0 of 2 files in validation")
    usage_error(["corpus", "--vocab", "70000"], "at most 65536")
    usage_error(["info"], "no SHARD given")
    assert "usage: gridlock_tokenize" in run([tool, "--help"]).stdout
    assert "usage: gridlock_tokenize" in run([tool, "encode", "-h"]).stdout

    texts = ["the cat sat on the mat. the cat ran.\n", "a dog and the cat\n", "then the end\n",
             "one more text, the last\n"]
    files = write_docs(workdir, "cli_texts", texts)
    tok = os.path.join(workdir, "cli.tokenizer.json")
    missing = os.path.join(workdir, "no_such_file.txt")
    p = run([tool, "train-bpe", "--vocab", "270", "-o", tok, missing], expect_rc=1)
    assert "no_such_file.txt" in p.stderr and p.stderr.count("\n") == 1, p.stderr
    p = run([tool, "train-bpe", "--vocab", "262", "-o", tok] + files)
    assert "262 tokens" in p.stdout, p.stdout
    prefix = os.path.join(workdir, "cli")
    run([tool, "encode", "--tokenizer", tok, "-o", prefix] + files)
    vocab, ids = read_shard(prefix + ".gltok")
    assert vocab == 262 and ids.count(0) == len(texts) and ids[0] == 0, (vocab, ids[:10])
    # F = 0.5 over 4 files: documents 1 and 3 (floor((k+1)/2) > floor(k/2)).
    run([tool, "encode", "--tokenizer", tok, "-o", prefix, "--val-fraction", "0.5"] + files)
    _, train_ids = read_shard(prefix + ".train.gltok")
    _, val_ids = read_shard(prefix + ".val.gltok")
    assert train_ids.count(0) == 2 and val_ids.count(0) == 2, (train_ids, val_ids)
    # Documents are encoded independently: the split is a partition of them.
    docs = lambda s: [s[i:j] for i, j in zip([k for k, t in enumerate(s) if t == 0],  # noqa: E731
                                             [k for k, t in enumerate(s) if t == 0][1:] + [len(s)])]
    whole = docs(ids)
    assert docs(train_ids) == [whole[0], whole[2]] and docs(val_ids) == [whole[1], whole[3]]
    p = run([tool, "info", prefix + ".gltok"])
    assert f"{len(ids)} tokens" in p.stdout and "vocab 262" in p.stdout, p.stdout
    # A byte-level BPE tokenizer without <|endoftext|> cannot separate documents.
    tok2 = os.path.join(workdir, "cli2.tokenizer.json")
    run([tool, "train-bpe", "--vocab", "270", "--special", "<pad>", "-o", tok2] + files)
    p = run([tool, "encode", "--tokenizer", tok2, "-o", prefix + "2"] + files, expect_rc=1)
    assert "<|endoftext|>" in p.stderr, p.stderr
    print("bpe_interop cli: all ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["check", "cli"])
    ap.add_argument("--tool", required=True, help="path of the gridlock_tokenize binary")
    ap.add_argument("--workdir", required=True, help="scratch directory (recreated)")
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    (check if a.mode == "check" else cli)(a.tool, a.workdir)


if __name__ == "__main__":
    main()
