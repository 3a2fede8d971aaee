#!/usr/bin/env python3
"""Generates data/unicode_tables.inc: the Unicode tables data/unicode.cpp needs
for byte-level BPE pre-tokenization and NFC normalization, from the running
Python's unicodedata (Unicode 14.0.0 with Python 3.11).

    python3 tools/gen_unicode_tables.py > data/unicode_tables.inc

Tables (every code point range is inclusive, every table sorted):
  letter ranges      General_Category L* (Lu Ll Lt Lm Lo): regex \\p{L}
  number ranges      General_Category N* (Nd Nl No):       regex \\p{N}
  space ranges       the White_Space property:             regex \\s
  ccc ranges         canonical combining class != 0
  decompositions     full (recursive) canonical decomposition of every code
                     point that has one, Hangul syllables excluded (they are
                     decomposed algorithmically)
  compositions       (first, second) -> primary composite, i.e. every
                     two-code-point canonical decomposition whose composite is
                     not Full_Composition_Exclusion (computed as NFC(c) == c,
                     which excludes singletons, non-starter decompositions
                     and the CompositionExclusions.txt list alike)

unicodedata has no White_Space property; it is str.isspace() minus the
information separators U+001C..U+001F (which Python counts as space through
their bidi class but PropList.txt does not), checked against the list below.
"""
import sys
import unicodedata

MAX_CP = 0x10FFFF
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
               (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
               (0x3000, 0x3000)]
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3


def ranges_of(pred):
    out, lo = [], None
    for cp in range(MAX_CP + 2):
        hit = cp <= MAX_CP and pred(cp)
        if hit and lo is None:
            lo = cp
        elif not hit and lo is not None:
            out.append((lo, cp - 1))
            lo = None
    return out


def valued_ranges(value_of):
    """[(lo, hi, v)] over maximal runs of equal non-zero value."""
    out = []
    for cp in range(MAX_CP + 1):
        v = value_of(cp)
        if not v:
            continue
        if out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1] = (out[-1][0], cp, v)
        else:
            out.append((cp, cp, v))
    return out


def canonical_mapping(cp):
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    m = canonical_mapping(cp)
    if m is None:
        return [cp]
    return [x for c in m for x in full_decomposition(c)]


def emit_ranges(name, ranges, out):
    out.append(f"static const CodeRange {name}[] = {{")
    line = "   "
    for lo, hi in ranges:
        item = f" {{0x{lo:X}, 0x{hi:X}}},"
        if len(line) + len(item) > 100:
            out.append(line)
            line = "   "
        line += item
    out.append(line)
    out.append("};")


def main():
    space = ranges_of(lambda cp: chr(cp).isspace() and not 0x1C <= cp <= 0x1F)
    assert space == WHITE_SPACE, space
    letters = ranges_of(lambda cp: unicodedata.category(chr(cp)).startswith("L"))
    numbers = ranges_of(lambda cp: unicodedata.category(chr(cp)).startswith("N"))
    ccc = valued_ranges(lambda cp: unicodedata.combining(chr(cp)))

    decomp = []
    for cp in range(MAX_CP + 1):
        if HANGUL_FIRST <= cp <= HANGUL_LAST or canonical_mapping(cp) is None:
            continue
        full = full_decomposition(cp)
        assert unicodedata.normalize("NFD", chr(cp)) == "".join(map(chr, full)), hex(cp)
        decomp.append((cp, full))

    comps = []
    for cp in range(MAX_CP + 1):
        if HANGUL_FIRST <= cp <= HANGUL_LAST:
            continue
        m = canonical_mapping(cp)
        if m is not None and len(m) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            comps.append((m[0], m[1], cp))
    comps.sort()
    # data/unicode.cpp's NFC fast path: text whose code points are all below
    # U+0300 (UTF-8 lead bytes < 0xCC) is already NFC.
    assert min(b for _, b, _ in comps) >= 0x300
    assert all(unicodedata.normalize("NFC", chr(cp)) == chr(cp) and not unicodedata.combining(chr(cp))
               for cp in range(0x300))

    out = [
        "// GENERATED FILE, DO NOT EDIT: written by tools/gen_unicode_tables.py from",
        f"// Python {sys.version.split()[0]} unicodedata, Unicode {unicodedata.unidata_version}.",
        "// Included by data/unicode.cpp only; see the generator for what each table holds.",
        "",
        f'static const char kUnicodeVersion[] = "{unicodedata.unidata_version}";',
        "",
    ]
    emit_ranges("kLetterRanges", letters, out)
    out.append("")
    emit_ranges("kNumberRanges", numbers, out)
    out.append("")
    emit_ranges("kSpaceRanges", space, out)
    out.append("")
    out.append("static const CombiningRange kCombiningRanges[] = {")
    line = "   "
    for lo, hi, v in ccc:
        item = f" {{0x{lo:X}, 0x{hi:X}, {v}}},"
        if len(line) + len(item) > 100:
            out.append(line)
            line = "   "
        line += item
    out += [line, "};", ""]

    flat = []
    out.append("static const Decomposition kDecompositions[] = {")
    line = "   "
    for cp, full in decomp:
        assert len(full) <= 255 and len(flat) < 65536
        item = f" {{0x{cp:X}, {len(flat)}, {len(full)}}},"
        flat += full
        if len(line) + len(item) > 100:
            out.append(line)
            line = "   "
        line += item
    out += [line, "};", "", "static const uint32_t kDecompositionData[] = {"]
    line = "   "
    for cp in flat:
        item = f" 0x{cp:X},"
        if len(line) + len(item) > 100:
            out.append(line)
            line = "   "
        line += item
    out += [line, "};", "", "static const Composition kCompositions[] = {"]
    line = "   "
    for a, b, c in comps:
        item = f" {{0x{a:X}, 0x{b:X}, 0x{c:X}}},"
        if len(line) + len(item) > 100:
            out.append(line)
            line = "   "
        line += item
    out += [line, "};"]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
