#!/usr/bin/env python3
"""FIFO sampler speed on the tiny reference VideoCrafter2 on CPU, through ComfyUI (CFGGuider + FIFO SAMPLER).

Measures, for the official settings (f = 16, n = 4, lookahead, eta 1, CFG 12: 2n = 8 windows of 16 frames,
cond and uncond batched), one sampling of N frames with all windows of an iteration in one UNet call
(window_batch 0) and one with one window per call (window_batch 1, the official order):

  base clip           wall time of the S-step base clip (VideoCrafter2's DDIM on one f-frame clip)
  time / iteration    FIFO wall time (after the base clip) / iterations: each iteration pops one frame, so
                      this is the steady-state time per output frame of a long video
  time / output frame total wall time / N (includes the base clip and the S - f warm-up iterations)
  total / UNet        total wall time / wall time inside the UNet's forward (1.0 = no sampler overhead)
  batching speed-up   total time with window_batch 1 / total time with window_batch 0

Writes the table to benchmarks/results/fifo.md (section fifo_speed) with the command that produced it.

    python benchmarks/fifo_speed.py [--frames 16] [--comfyui <ComfyUI root>]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, TinyFifo, machine_note, write_section  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="output frames N")
    parser.add_argument("--video-length", type=int, default=None, help="f (default: the manifest's)")
    parser.add_argument("--partitions", type=int, default=None, help="n (default: the manifest's)")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    bench = TinyFifo(args.comfyui)
    m = bench.manifest["fifo"]
    f = args.video_length or m["video_length_f"]
    n = args.partitions or m["num_partitions_n"]
    rows = []
    outputs = {}
    bench.run(1, f, 1, 0, eta=0.0)          # warm-up: first-call allocations and kernel selection
    for window_batch in (0, 1):
        out, t = bench.run(args.frames, f, n, window_batch)
        outputs[window_batch] = out
        rows.append((window_batch, t))
        print(f"window_batch {window_batch}: {t}", flush=True)
    difference = (outputs[0] - outputs[1]).abs().max().item()
    batched, sequential = rows[0][1], rows[1][1]
    windows = 2 * n
    lines = [
        f"## Speed (FIFO SAMPLER through ComfyUI's CFGGuider)",
        "",
        f"Settings: f = {f}, n = {n}, lookahead, eta 1, CFG {m['cfg_scale']}, latent {bench.frame_shape[1]}x"
        f"{bench.frame_shape[2]}, N = {args.frames} frames ({batched['iterations']} iterations after a "
        f"{batched['base_steps']}-step base clip), fp32.",
        "",
        "| window_batch | UNet calls | total (s) | in UNet (s) | total / UNet | base clip (s) | time / iteration (s) | time / output frame (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for window_batch, t in rows:
        label = f"{window_batch} (all {windows} windows per call)" if window_batch == 0 else "1 (one window per call)"
        lines.append(f"| {label} | {t['unet_calls']} | {t['total']:.1f} | {t['unet']:.1f} | "
                     f"{t['total'] / t['unet']:.3f} | {t['base']:.1f} | {t['fifo'] / t['iterations']:.3f} | "
                     f"{t['total'] / args.frames:.2f} |")
    lines += [
        "",
        f"Window batching speed-up of the FIFO iterations (window_batch 1 / window_batch 0): "
        f"**{sequential['fifo'] / batched['fifo']:.2f}x** (total time {sequential['total'] / batched['total']:.2f}x); "
        f"largest difference between the two outputs "
        f"{difference:.2g} (several CPU threads: oneDNN's rounding depends on the batch size; with one thread "
        f"the outputs are identical, tests/test_fifo_core.py).",
        "",
        machine_note(),
        "",
        f"Command: `python benchmarks/fifo_speed.py --frames {args.frames}`"
        + (f" --video-length {f}" if args.video_length else "") + (f" --partitions {n}" if args.partitions else ""),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("fifo_speed", text))


if __name__ == "__main__":
    main()
