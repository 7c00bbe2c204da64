#!/usr/bin/env python3
"""FIFO sampler memory against video length: peak RSS for N = 64, 256 and 1024 output frames.

Each N runs in a fresh Python process (ComfyUI in-process, the tiny reference VideoCrafter2, fp32, CPU, the FIFO
SAMPLER through CFGGuider). The process reports its RSS after loading everything and its peak RSS
(`ru_maxrss`) after sampling. FIFO keeps one queue of L frames whatever N, so the peak may grow with N only by
the output latents (N x 4 x h x w float32, held twice: the sampler's output and ComfyUI's process_latent_out
copy). "bytes / extra frame" is the slope of the peak between the smallest and the largest N.

To keep the run short the queue is small by default (f = 4, n = 1, lookahead: 2 windows of 4 frames per
iteration, N iterations); memory per iteration does not depend on N whatever f and n are.

Writes the table to benchmarks/results/fifo.md (section fifo_memory) with the command that produced it.

    python benchmarks/fifo_memory.py [--frames 64 256 1024] [--video-length 4] [--partitions 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, TinyFifo, machine_note, write_section  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args) -> None:
    """One measurement; prints a JSON line."""
    bench = TinyFifo(args.comfyui)
    bench.run(1, args.video_length, args.partitions, 0)          # warm-up at N = 1 (same allocations per call)
    before = rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    out, timing = bench.run(args.child, args.video_length, args.partitions, 0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(frames=args.child, rss_before=before, peak_before=peak_before, peak=peak,
                          output_bytes=out.numel() * out.element_size(), seconds=seconds,
                          frame_shape=list(bench.frame_shape),
                          iterations=timing["iterations"])), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--video-length", type=int, default=4, help="f")
    parser.add_argument("--partitions", type=int, default=1, help="n")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args)

    results = []
    for frames in args.frames:
        command = [sys.executable, os.path.abspath(__file__), "--child", str(frames), "--video-length",
                   str(args.video_length), "--partitions", str(args.partitions), "--comfyui", args.comfyui]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"N = {frames} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        results.append(json.loads(lines[-1]))
        print(results[-1], flush=True)

    mib = 1024 ** 2
    first, last = results[0], results[-1]
    slope = (last["peak"] - first["peak"]) / (last["frames"] - first["frames"])
    output_per_frame = last["output_bytes"] / last["frames"]
    lines = [
        "## Memory against video length (peak RSS, one fresh process per N)",
        "",
        f"Settings: f = {args.video_length}, n = {args.partitions}, lookahead, eta 1, window_batch 0, latent frames "
        f"{'x'.join(str(s) for s in last['frame_shape'])}, fp32, CPU.",
        "",
        "| N | iterations | RSS before sampling (MiB) | peak RSS (MiB) | peak - before (MiB) | output latent (MiB) | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['frames']} | {r['iterations']} | {r['rss_before'] / mib:.1f} | {r['peak'] / mib:.1f} | "
                     f"{(r['peak'] - r['rss_before']) / mib:.1f} | {r['output_bytes'] / mib:.2f} | {r['seconds']:.0f} |")
    lines += [
        "",
        f"Peak RSS grows by **{slope:.0f} bytes per extra output frame** between N = {first['frames']} and "
        f"N = {last['frames']}; one output latent frame is {output_per_frame:.0f} bytes (float32).",
        "",
        machine_note(),
        "",
        "Command: `python benchmarks/fifo_memory.py --frames " + " ".join(str(f) for f in args.frames)
        + f" --video-length {args.video_length} --partitions {args.partitions}`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("fifo_memory", text))


if __name__ == "__main__":
    main()
