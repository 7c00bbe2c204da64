#!/usr/bin/env python3
"""FIFO sampler speed on the tiny reference VideoCrafter2 on CPU, through ComfyUI (CFGGuider + FIFO SAMPLER).

Settings are the reference manifest's (official FIFO: f = 16, n = 4, lookahead, eta 1, CFG 12, so 2n = 8
windows of 16 frames per iteration, cond and uncond batched by ComfyUI). Every iteration costs the same
(warm-up iterations included), so K iterations are timed and the run is stopped (the queue starts from the
reference base clip); the base clip (S DDIM steps on one f-frame clip) is timed once on its own.

  time / iteration     wall time of one FIFO iteration = one output frame in a long video
  in UNet / iteration  wall time inside the UNet's forward (ComfyUI's DIFFUSION_MODEL wrapper)
  total / UNet         iteration time / UNet time: 1.0 would be no overhead from sampler, guider and CFG
  per frame, N = 100   (base clip + (N + S - f) iterations) / N, the cost per frame of a 100-frame video
  batching speed-up    time / iteration with window_batch 1 (one window per call, the official order)
                       divided by time / iteration with window_batch 0 (all 2n windows in one call)

Writes the table to benchmarks/results/fifo.md (section fifo_speed) with the command that produced it.

    python benchmarks/fifo_speed.py [--iterations 4] [--threads N] [--comfyui <ComfyUI root>]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, TinyFifo, machine_note, reference_dir, write_section  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=4, help="FIFO iterations timed per setting (K)")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice; 1 is steadier on a busy machine)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import safetensors.torch
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = TinyFifo(args.comfyui)
    m = bench.manifest["fifo"]
    f, n, k = m["video_length_f"], m["num_partitions_n"], args.iterations
    steps, windows = f * n, 2 * n
    clip = safetensors.torch.load_file(os.path.join(reference_dir(), "fifo.safetensors"))["base.eta1.latents"]
    clip = clip[0].transpose(0, 1).contiguous()                     # [f, 4, h, w], model space

    bench.run(1, f, n, 0, base_clip=clip, stop_after=1)             # warm-up (first-call allocations)
    _, base = bench.run(1, f, n, 0, stop_after=1)                   # the base clip, then one iteration
    rows = {}
    for window_batch in (0, 1):
        _, t = bench.run(1, f, n, window_batch, base_clip=clip, stop_after=k)
        rows[window_batch] = t
        print(f"window_batch {window_batch}: {t}", flush=True)

    def per_frame(t, frames):
        return (base["base"] + (frames + steps - f) * t["fifo"] / t["iterations"]) / frames

    lines = [
        "## Speed (FIFO SAMPLER through ComfyUI's CFGGuider)",
        "",
        f"Settings: f = {f}, n = {n} (S = {steps} levels, {windows} windows of {f} frames per iteration), lookahead, "
        f"eta 1, CFG {m['cfg_scale']}, latent frames {'x'.join(map(str, bench.frame_shape))}, fp32, CPU; {k} "
        f"iterations timed per row. Base clip ({steps} DDIM steps on {f} frames): {base['base']:.1f} s "
        f"({base['unet'] - base['unet_fifo']:.1f} s in the UNet).",
        "",
        "| window_batch | UNet calls / iteration | time / iteration (s) | in UNet / iteration (s) | total / UNet | "
        "per frame, N = 100 (s) | per frame, N = 1000 (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for window_batch, t in rows.items():
        label = f"0 (all {windows} windows per call)" if window_batch == 0 else "1 (one window per call)"
        lines.append(f"| {label} | {t['unet_calls'] / t['iterations']:.0f} | {t['fifo'] / t['iterations']:.2f} | "
                     f"{t['unet_fifo'] / t['iterations']:.2f} | {t['fifo'] / t['unet_fifo']:.3f} | "
                     f"{per_frame(t, 100):.2f} | {per_frame(t, 1000):.2f} |")
    speedup = (rows[1]["fifo"] / rows[1]["iterations"]) / (rows[0]["fifo"] / rows[0]["iterations"])
    lines += [
        "",
        f"Window batching speed-up (time / iteration, window_batch 1 over window_batch 0): **{speedup:.2f}x**. "
        f"Both give the same latents: bit for bit with PyTorch's native convolutions (tests/test_fifo_core.py); "
        f"oneDNN's convolutions pick their algorithm by batch size, which changes the UNet's own rounding by up to "
        f"about 1e-6 on values of about 100.",
        "",
        machine_note(),
        "",
        f"Command: `python benchmarks/fifo_speed.py --iterations {k}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("fifo_speed", text))


if __name__ == "__main__":
    main()
