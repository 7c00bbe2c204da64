#!/usr/bin/env bash
# make demo: build the environment if needed, then run the bundled tiny model through a real headless
# ComfyUI server and write the video (mp4 + animated webp) to ./output. Extra arguments go to tools/demo.py
# (e.g. --frames 64 --prompt "a blue square moving left" --seed 3).
set -euo pipefail
pack_dir=$(cd "$(dirname "$0")/.." && pwd)
SECONDS=0
eval "$("$pack_dir/tools/setup_env.sh")"
echo "[demo] environment ready ($COMFYUI): ${SECONDS} s"
export FIFO_PYTHON="$PYTHON" FIFO_COMFYUI_ROOT="$COMFYUI"
cd "$pack_dir"
exec "$PYTHON" tools/demo.py --comfyui "$COMFYUI" --python "$PYTHON" "$@"
