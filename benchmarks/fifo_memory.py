#!/usr/bin/env python3
"""FIFO sampler memory against video length: peak RSS for N = 64, 256 and 1024 output frames.

Each N runs in a fresh Python process (ComfyUI in-process, the tiny reference VideoCrafter2, fp32, CPU, the FIFO
SAMPLER through CFGGuider). After loading everything and one warm-up sampling, the process notes its RSS, resets
the kernel's peak-RSS mark (so loading peaks do not count) and reports the peak RSS (VmHWM) of the sampling. FIFO keeps one queue of L frames whatever N, so the peak may grow with N only by
the output latents (N x 4 x h x w float32, held twice: the sampler's output and ComfyUI's process_latent_out
copy). "bytes / extra frame" is the slope of the peak between the smallest and the largest N.

To keep the run within a few minutes the queue is small by default (f = 2, n = 1, lookahead: 2 windows of 2
frames per iteration, N iterations, base clip of 2 steps); what one iteration holds does not depend on N,
whatever f and n are.

Writes the table to benchmarks/results/fifo.md (section fifo_memory) with the command that produced it.

    python benchmarks/fifo_memory.py [--frames 64 256 1024] [--video-length 2] [--partitions 1] [--threads N]
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


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS, so the peak measured afterwards is the
    sampling's own and not the model loading's (Linux `clear_refs` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """VmHWM: the peak RSS since start or since `reset_peak()`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args) -> None:
    """One measurement; prints a JSON line."""
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    bench = TinyFifo(args.comfyui)
    bench.run(1, args.video_length, args.partitions, 0)          # warm-up at N = 1 (same allocations per call)
    load_peak = peak_bytes()
    before = rss_bytes()
    if not reset_peak():
        raise SystemExit("cannot reset the peak RSS mark (/proc/self/clear_refs): Linux only")
    start = time.perf_counter()
    out, timing = bench.run(args.child, args.video_length, args.partitions, 0)
    seconds = time.perf_counter() - start
    peak = peak_bytes()
    print(json.dumps(dict(frames=args.child, rss_before=before, load_peak=load_peak, peak=peak,
                          output_bytes=out.numel() * out.element_size(), seconds=seconds,
                          frame_shape=list(bench.frame_shape),
                          iterations=timing["iterations"])), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--video-length", type=int, default=2, help="f")
    parser.add_argument("--partitions", type=int, default=1, help="n")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice; 1 is steadier on a busy machine)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    results = []
    for frames in args.frames:
        command = [sys.executable, os.path.abspath(__file__), "--child", str(frames), "--video-length",
                   str(args.video_length), "--partitions", str(args.partitions), "--comfyui", args.comfyui]
        if args.threads:
            command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"N = {frames} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        results.append(json.loads(lines[-1]))
        print(results[-1], flush=True)

    mib = 1024 ** 2
    first, last = results[0], results[-1]
    slope = ((last["peak"] - last["rss_before"]) - (first["peak"] - first["rss_before"])) / (last["frames"] - first["frames"])
    output_per_frame = last["output_bytes"] / last["frames"]
    lines = [
        "## Memory against video length (peak RSS, one fresh process per N)",
        "",
        f"Settings: f = {args.video_length}, n = {args.partitions}, lookahead, eta 1, window_batch 0, latent frames "
        f"{'x'.join(str(s) for s in last['frame_shape'])}, fp32, CPU.",
        "",
        "| N | iterations | peak RSS while loading (MiB) | RSS before sampling (MiB) | peak RSS while sampling (MiB) | "
        "sampling peak - before (MiB) | output latent (MiB) | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['frames']} | {r['iterations']} | {r['load_peak'] / mib:.1f} | {r['rss_before'] / mib:.1f} | "
                     f"{r['peak'] / mib:.1f} | {(r['peak'] - r['rss_before']) / mib:.2f} | "
                     f"{r['output_bytes'] / mib:.2f} | {r['seconds']:.0f} |")
    lines += [
        "",
        f"The sampling's peak (above the RSS it started from) grows by **{slope:.0f} bytes per extra output frame** "
        f"between N = {first['frames']} and N = {last['frames']}; one output latent frame is "
        f"{output_per_frame:.0f} bytes (float32). Expected: at most about two output frames per extra frame (the "
        f"sampler's output and ComfyUI's process_latent_out copy); the queue and the model calls do not depend on "
        f"N. Differences of a few MiB between runs are the allocator's.",
        "",
        machine_note(),
        "",
        "Command: `python benchmarks/fifo_memory.py --frames " + " ".join(str(f) for f in args.frames)
        + f" --video-length {args.video_length} --partitions {args.partitions}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("fifo_memory", text))


if __name__ == "__main__":
    main()
