#!/usr/bin/env python3
"""Validates every complete checkpoint of a run (tests/trainer/e2e/fault_*.sh).

    check_checkpoints.py RUN_DIR

For each RUN_DIR/checkpoints/step-XXXXXXXX (the .tmp-* directories of an
interrupted save are not checkpoints and are ignored): config.json and
trainer_state.json parse, the state's step matches the name, and both
safetensors files are whole: the 8-byte header length, a JSON header, and
data offsets that tile the data section exactly up to the end of the file.
Exit 1 naming the first bad file.
"""
import json
import os
import struct
import sys


def check_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    assert len(blob) >= 8, "shorter than the 8-byte header length"
    (n,) = struct.unpack("<Q", blob[:8])
    assert 8 + n <= len(blob), "header runs past the end"
    header = json.loads(blob[8:8 + n])
    ends = [v["data_offsets"] for k, v in header.items() if k != "__metadata__"]
    ends.sort()
    at = 0
    for b, e in ends:
        assert b == at and e >= b, f"data offsets do not tile: {b} after {at}"
        at = e
    assert 8 + n + at == len(blob), f"{len(blob)} bytes, the header describes {8 + n + at}"


def main():
    root = os.path.join(sys.argv[1], "checkpoints")
    if not os.path.isdir(root):
        return 0
    for name in sorted(os.listdir(root)):
        if not name.startswith("step-"):
            continue
        d = os.path.join(root, name)
        for f in ("config.json", "trainer_state.json", "model.safetensors", "optimizer.safetensors"):
            p = os.path.join(d, f)
            try:
                if f.endswith(".json"):
                    j = json.load(open(p))
                    if f == "trainer_state.json":
                        assert j["step"] == int(name[5:]), f"step {j['step']} in {name}"
                else:
                    check_safetensors(p)
            except Exception as e:  # noqa: BLE001 - any failure is a corrupt checkpoint
                print(f"corrupt checkpoint: {p}: {e}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
