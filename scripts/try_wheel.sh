#!/usr/bin/env bash
# The wheel is the product: build it, install it alone in a fresh virtual environment (torch pinned first,
# then the wheel with its dependencies, nothing from this checkout), and run what a user runs first:
# `emorec predict` on a real clip with the released model inside the wheel, and `emorec serve` up to /healthz.
# Usage: bash scripts/try_wheel.sh [CLIP]   # CLIP: an audio file (default: a RAVDESS clip of ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" . >/dev/null
WHEEL=$(ls "$WORK"/dist/emorec-*.whl)
echo "built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade "pip>=24" >/dev/null
"$WORK/venv/bin/python" -m pip install -q -c constraints.txt "torch==2.13.0"
"$WORK/venv/bin/python" -m pip install -q -c constraints.txt "$WHEEL[serve]"

CLIP=${1:-$(ls "$PWD"/../shared/data/ravdess-speech-16k/Actor_01/*.flac 2>/dev/null | head -1 || true)}
if [ -z "$CLIP" ]; then  # no shared data beside the checkout: a generated voiced sweep stands in
  CLIP="$WORK/clip.wav"
  "$WORK/venv/bin/python" -c "
import numpy as np, soundfile as sf
t = np.arange(32000) / 16000
sf.write('$CLIP', 0.3 * np.sin(2 * np.pi * (140 + 40 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2, 16000)"
fi
cd "$WORK"  # nothing of the checkout on the path: the wheel alone
"$WORK/venv/bin/emorec" predict "$CLIP"

PORT=$("$WORK/venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$WORK/venv/bin/emorec" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 120); do
  if "$WORK/venv/bin/python" -c "
import sys, urllib.request
try:
    body = urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2).read().decode()
except OSError:
    sys.exit(1)
print('healthz:', body)" 2>/dev/null; then
    echo "the wheel alone predicts and serves"
    exit 0
  fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    cat "$WORK/serve.log"; echo "emorec serve from the wheel exited before /healthz answered" >&2; exit 1
  fi
  sleep 1
done
cat "$WORK/serve.log"; echo "emorec serve from the wheel did not answer /healthz in 120 s" >&2; exit 1
