#!/usr/bin/env bash
# Create .venv and install emorec with the pinned, tested versions (constraints.txt).
# torch is installed first and pinned, so no unpinned torch (a multi-GB CUDA build) is ever resolved.
# Usage: bash scripts/setup.sh            # the package and its optional extras
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,egemaps,ssl,video,onnx,serve]"
# The voice_encoder front end reads the encoder weights that the resemblyzer wheel ships; its code and its
# dependencies (webrtcvad, built from source) are not used, so the wheel alone is installed.
.venv/bin/python -m pip install -q -c constraints.txt --no-deps "resemblyzer==0.1.4"
echo "emorec installed in .venv (activate with: source .venv/bin/activate)"
