#!/usr/bin/env bash
# The whole test suite against a real ComfyUI: builds the environment if needed (tools/setup_env.sh),
# then runs pytest. Extra arguments go to pytest (e.g. tests/test_fifo_core.py -k parity).
# FIFO_COMFYUI=0.33.0 or 0.3.75 picks the host (default: the newest available); COMFYUI_PATH a ComfyUI of your own.
set -euo pipefail
pack_dir=$(cd "$(dirname "$0")/.." && pwd)
eval "$("$pack_dir/tools/setup_env.sh")"
export FIFO_PYTHON="$PYTHON" FIFO_COMFYUI_ROOT="$COMFYUI"
echo "[tests] ComfyUI $COMFYUI_VERSION at $COMFYUI" >&2
cd "$pack_dir"
exec "$PYTHON" -m pytest -p no:cacheprovider --durations=15 "${@:-tests}"
