#!/usr/bin/env python3
"""Peak memory of saving a long video: `Save Video (streaming)` against stock VAE Decode + SaveAnimatedWEBP.

For each frame count N (default 250, 1000, 2000) and each way of saving, a fresh Python process imports ComfyUI
in-process with the pack, builds the VAE of the bundled tiny model (models/fifo_infinity_tiny_vc2.safetensors;
the reference tiny model if the bundled one is absent), makes N random latents of that model's size
([N, 4, 8, 8] for 64x64 frames, seeded) and saves them:

  streaming  FIFOInfinitySaveVideoStreaming (decodes `decode_chunk` = 16 frames at a time, encodes each chunk
             into an mp4/H.264 file with PyAV as it goes)
  stock      ComfyUI's VAEDecode (the whole IMAGE batch [N, 64, 64, 3] float32) then SaveAnimatedWEBP (one PIL
             image per frame, one animated webp), the nodes the example workflows use

Memory is the process's resident set: "before" after everything is loaded and one 2-frame warm-up save of the
same kind has run (so lazy imports and codec set-up are not counted), then the kernel's peak counter (VmHWM) is
reset (`/proc/self/clear_refs`) and "peak" is VmHWM after the N-frame save; "growth" = peak - before. The saved
file is read back and must hold N frames. Times are wall seconds of the save alone.

Writes benchmarks/results/streaming_save.md (the table and the command that produced it).

    python benchmarks/streaming_save.py [--frames 250 1000 2000] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PACK_DIR, "benchmarks", "results")
DEFAULT_COMFYUI = os.environ.get("FIFO_COMFYUI_ROOT") or os.environ.get("COMFYUI_PATH") or \
    os.path.expanduser("~/.cache/fifo-infinity/comfyui-0.3.75")
BUNDLED_MODEL = os.path.join(PACK_DIR, "models", "fifo_infinity_tiny_vc2.safetensors")
REFERENCE_MODEL = "/work/shared/reference/vc2_tiny/tiny_vc2.safetensors"
METHODS = {
    "streaming": "Save Video (streaming), mp4/H.264, decode_chunk 16",
    "stock": "VAEDecode + SaveAnimatedWEBP",
}
MIB = 1024 ** 2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import bootstrap  # noqa: E402  the pack's host_bootstrap.py


def model_path() -> str:
    for path in (os.environ.get("FIFO_TINY_MODEL"), BUNDLED_MODEL, REFERENCE_MODEL,
                 os.path.join(PACK_DIR, "..", "shared", "reference", "vc2_tiny", "tiny_vc2.safetensors")):
        if path and os.path.isfile(path):
            return os.path.abspath(path)
    raise SystemExit(f"no tiny model: neither {BUNDLED_MODEL} nor {REFERENCE_MODEL} exists (set FIFO_TINY_MODEL)")


# --- memory probes (Linux) ---------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss() -> int:
    return _status_kib("VmRSS") * 1024


class PeakRss:
    """Peak resident set over a block. Uses the kernel's own peak (VmHWM), reset at the start through
    /proc/self/clear_refs; where that reset is not allowed, samples VmRSS every 2 ms in a thread instead."""

    def __enter__(self):
        self.sampled = 0
        self.kernel = True
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.kernel = False
        if self.kernel and _status_kib("VmHWM") > _status_kib("VmRSS") + 1024:   # the reset did not take
            self.kernel = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, rss())
            self._stop.wait(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sampled = max(self.sampled, rss())
        self.peak = _status_kib("VmHWM") * 1024 if self.kernel else self.sampled


# --- one measurement (child process) -----------------------------------------------------------------------

def load_host(comfyui: str):
    """ComfyUI's `nodes` (CPU mode, built-in extra nodes) with the pack loaded by ComfyUI's own loader."""
    nodes = bootstrap.import_comfyui(comfyui)
    bootstrap.load_builtin_nodes(nodes)
    if not bootstrap.load_pack(nodes):
        raise bootstrap.PackLoadError("ComfyUI failed to load the pack")
    return nodes


def load_vae(path: str):
    """The checkpoint's VAE through the pack's loader code (only the `first_stage_model.*` tensors are read)."""
    from safetensors import safe_open
    bootstrap.register_pack()
    from fifo_infinity.videocrafter.loader import build_vae
    prefix = "first_stage_model."
    with safe_open(path, "pt") as f:
        vae_sd = {key[len(prefix):]: f.get_tensor(key) for key in f.keys() if key.startswith(prefix)}
    return build_vae(vae_sd)


def count_frames(path: str) -> int:
    if path.endswith(".webp"):
        from PIL import Image
        with Image.open(path) as image:
            return image.n_frames
    import av
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def child(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    nodes = load_host(args.comfyui)
    import folder_paths
    out_dir = tempfile.mkdtemp(prefix="fifo_streaming_save_")
    folder_paths.set_output_directory(out_dir)
    try:
        vae = load_vae(args.model)
        down = vae.downscale_ratio if isinstance(vae.downscale_ratio, int) else 8
        generator = torch.Generator().manual_seed(args.seed)
        latent_hw = args.size // down
        # VAE-space latents of the model's size (the sampler's output has this scale: model space / 0.18215)
        samples = torch.randn(args.child, vae.latent_channels, latent_hw, latent_hw, generator=generator) / 0.18215

        if args.method == "streaming":
            node = nodes.NODE_CLASS_MAPPINGS["FIFOInfinitySaveVideoStreaming"]

            def save(latent, prefix):
                result = node.execute(samples={"samples": latent}, vae=vae, filename_prefix=prefix,
                                      format="mp4 (H.264)", fps=8.0, quality=85, decode_chunk=16)
                saved = result.ui.as_dict() if hasattr(result.ui, "as_dict") else result.ui
                entry = (saved.get("images") or saved.get("videos"))[0]
                return os.path.join(out_dir, entry["subfolder"], entry["filename"])
        else:
            decode = nodes.VAEDecode()
            webp = nodes.NODE_CLASS_MAPPINGS["SaveAnimatedWEBP"]()

            def save(latent, prefix):
                images = decode.decode(vae, {"samples": latent})[0]
                result = webp.save_images(images, fps=8.0, filename_prefix=prefix, lossless=False, quality=90,
                                          method="default")
                entry = result["ui"]["images"][0]
                return os.path.join(out_dir, entry["subfolder"], entry["filename"])

        # frames per first_stage_model.decode call inside ComfyUI's VAE.decode for the whole latent (stock) or a
        # 16-frame chunk (streaming): it divides the free memory by an estimate per frame
        import comfy.model_management
        per_frame = vae.memory_used_decode(samples.shape, vae.vae_dtype)
        decode_batch = max(1, int(comfy.model_management.get_free_memory(vae.device) / per_frame))
        decode_batch = min(decode_batch, args.child if args.method == "stock" else 16)
        with torch.inference_mode():   # as ComfyUI's executor runs nodes
            warm = save(samples[:2].clone(), "warmup/video")
            assert count_frames(warm) == 2
            before = rss()
            start = time.perf_counter()
            with PeakRss() as probe:
                path = save(samples, "bench/video")
            seconds = time.perf_counter() - start
        frames = count_frames(path)
        if frames != args.child:
            raise SystemExit(f"{args.method}: the saved file holds {frames} frames, not {args.child}")
        print(json.dumps(dict(method=args.method, frames=args.child, before=before, peak=probe.peak,
                              peak_source="VmHWM" if probe.kernel else "sampled VmRSS", seconds=seconds,
                              file_bytes=os.path.getsize(path), frame_size=args.size, decode_batch=decode_batch,
                              latent_shape=list(samples.shape), model=os.path.relpath(args.model, PACK_DIR)
                              if args.model.startswith(PACK_DIR) else args.model)), flush=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# --- driver ------------------------------------------------------------------------------------------------

def machine_note() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPU cores shared with other jobs (load average at the end {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f}), so times are noisy; memory is not affected by the load")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 1000, 2000])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (the tiny model makes 64x64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="checkpoint whose VAE decodes (default: the bundled tiny model)")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.model = os.path.abspath(args.model) if args.model else model_path()
    if args.child is not None:
        return child(args)

    results = {}
    for method in args.methods:
        for frames in args.frames:
            command = [sys.executable, os.path.abspath(__file__), "--child", str(frames), "--method", method,
                       "--size", str(args.size), "--threads", str(args.threads), "--seed", str(args.seed),
                       "--model", args.model, "--comfyui", args.comfyui]
            done = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"{method}, N = {frames} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[method, frames] = json.loads(lines[-1])
            r = results[method, frames]
            print(f"{method:9s} N = {frames:5d}: before {r['before'] / MIB:7.1f} MB, peak {r['peak'] / MIB:7.1f} MB, "
                  f"growth {(r['peak'] - r['before']) / MIB:7.1f} MB, {r['seconds']:6.1f} s, "
                  f"file {r['file_bytes'] / 1024:.0f} KiB, decode batch {r['decode_batch']} ({r['peak_source']})", flush=True)

    header = "| frames | " + " | ".join(f"{METHODS[m]}: peak RSS MB (growth) | s" for m in args.methods) + " |"
    rule = "|---:|" + "---:|---:|" * len(args.methods)
    rows = []
    for frames in args.frames:
        cells = []
        for method in args.methods:
            r = results[method, frames]
            cells += [f"{r['peak'] / MIB:.0f} ({(r['peak'] - r['before']) / MIB:+.0f})", f"{r['seconds']:.1f}"]
        rows.append(f"| {frames} | " + " | ".join(cells) + " |")
    table = "\n".join([header, rule, *rows])

    ordered = sorted(args.frames)
    slopes = []
    for method in args.methods:
        growth = {n: results[method, n]["peak"] - results[method, n]["before"] for n in ordered}
        steps = [f"{a} -> {b} frames: {(growth[b] - growth[a]) / MIB:+.1f} MB "
                 f"({(growth[b] - growth[a]) / (b - a) / 1024:+.1f} KiB per extra frame)"
                 for a, b in zip(ordered, ordered[1:])]
        batches = sorted({results[method, n]["decode_batch"] for n in ordered})
        slopes.append(f"- {METHODS[method]}: growth {'; '.join(steps)}; frames per VAE decode call "
                      f"{'/'.join(map(str, batches))}")
    sample = next(iter(results.values()))
    command = " ".join(shlex.quote(a) for a in [sys.executable, "benchmarks/streaming_save.py", *(argv or sys.argv[1:])])
    report = "\n".join([
        "# Saving a long video: peak memory",
        "",
        f"Command (from the pack folder): `{command}`",
        "",
        f"VAE of `{sample['model']}`; random VAE-space latents {sample['latent_shape'][1:]} per frame "
        f"({args.size}x{args.size} frames), seed {args.seed}; one fresh process per cell, torch threads "
        f"{args.threads}. Peak RSS in MB ({sample['peak_source']}, reset after loading and a 2-frame warm-up save; "
        f"growth over the RSS just before the save in brackets); seconds of the save alone. Every saved file was "
        f"read back and holds N frames.",
        "",
        table,
        "",
        *slopes,
        "",
        f"The stock path holds the whole decoded IMAGE batch (N x {args.size} x {args.size} x 3 float32 = "
        f"{args.size * args.size * 3 * 4 / 1024:.0f} KiB per frame here, 1.9 MB per frame at 512x320) and, while "
        "SaveAnimatedWEBP encodes, one PIL image per frame; on top of that ComfyUI's VAE.decode runs the decoder on "
        "as many frames at once as the machine's free memory allows by its estimate (the decode batch above), so "
        "its transient peak depends on the free memory too. The streaming node never holds more than one "
        "16-frame chunk of decoded frames; its peak is that chunk's decode plus the encoder.",
        "",
        machine_note() + ".",
        "",
    ])
    print()
    print(table)
    print("\n".join(slopes))
    if not args.no_write:
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, "streaming_save.md")
        with open(path, "w") as f:
            f.write(report)
        print(f"written to {os.path.relpath(path, PACK_DIR)}")


if __name__ == "__main__":
    main()
