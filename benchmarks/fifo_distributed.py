#!/usr/bin/env python3
"""FIFO-Diffusion with the windows of every iteration spread over K torch.distributed (gloo) ranks, against K = 1
(tiny reference VideoCrafter2, CPU, through ComfyUI's CFGGuider and the FIFO SAMPLER with devices empty, which
under a process group means torch.distributed).

For every K, K fresh processes (torch.multiprocessing.spawn, file:// rendezvous, `--threads` each: the same count
for every K, since the thread count changes the float rounding of the UNet's reductions) load
ComfyUI and the tiny model and sample the same video (same seed). Each rank reports its seconds per FIFO iteration
(one output frame per iteration; the base clip excluded), the tensor bytes it exchanged per iteration (the written
frames' all_gather; the small agreement checks are left out), its peak RSS during the sampling (the kernel's VmHWM,
reset after loading) and rank 0 the output's maximum difference from K = 1. On this machine's two shared cores the
point is correctness and traffic, not speed: the K ranks share the same two cores.

    python benchmarks/fifo_distributed.py [--ranks 1 2 4] [--video-length 16] [--partitions 4] [--frames 4] [--threads 1]

Writes the section `distributed` of benchmarks/results/fifo.md (the table, the command, the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, TinyFifo, machine_note, write_section  # noqa: E402
from video_infinity_scaling import peak_since_reset, reset_peak  # noqa: E402


def rank_main(rank, world, init, args, threads, out_dir):
    import safetensors.torch
    import torch
    import torch.distributed as dist
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    tiny = TinyFifo(args.comfyui)
    from fifo_infinity.parallel.transport import Traffic
    exchanged = {"bytes": 0}
    original_add = Traffic.add

    def count(traffic, buffer_bytes, ranks):
        exchanged["bytes"] += buffer_bytes * ranks
        original_add(traffic, buffer_bytes, ranks)

    Traffic.add = count
    reset_peak()
    out, timings = tiny.run(args.frames, args.video_length, args.partitions, window_batch=args.window_batch,
                            eta=1.0, seed=3)
    result = {"rank": rank, "seconds_per_iteration": timings["fifo"] / timings["iterations"],
              "received_per_iteration": exchanged["bytes"] / timings["iterations"], "peak_rss": peak_since_reset(),
              "threads": threads, "iterations": timings["iterations"]}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    if rank == 0:
        safetensors.torch.save_file({"out": out.contiguous()}, os.path.join(out_dir, "out.safetensors"))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def measure(args, world: int) -> dict:
    import safetensors.torch
    import torch.multiprocessing as mp
    threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(rank_main, args=(world, "file://" + os.path.join(tmp, "rdv"), args, threads, tmp), nprocs=world,
                 join=True)
        ranks = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(world)]
        out = safetensors.torch.load_file(os.path.join(tmp, "out.safetensors"))["out"]
    return {"ranks": ranks, "out": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--video-length", type=int, default=16)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4, help="N output frames (iterations = N + f*n - f)")
    parser.add_argument("--window-batch", type=int, default=1,
                        help="windows per model call (1: every K computes the same calls, so the frames are equal bit for bit)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank (the same for every K)")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    args = parser.parse_args(argv)
    results = {world: measure(args, world) for world in sorted(set(args.ranks) | {1})}
    reference = results[1]["out"]
    frame_bytes = reference[0].numel() * reference.element_size()
    lines = ["| ranks K | s / iteration (rank 0) | received per iteration per rank | peak RSS per rank (MiB) | "
             f"max abs diff from K = 1 (max abs value {reference.abs().max().item():.3g}) |", "|---|---|---|---|---|"]
    for world, result in results.items():
        ranks = result["ranks"]
        received = ranks[0]["received_per_iteration"]
        lines.append(f"| {world} | {ranks[0]['seconds_per_iteration']:.3f} | "
                     f"{received / 1024:.1f} KiB ({received / frame_bytes:.0f} frames) | "
                     f"{', '.join(str(round(r['peak_rss'] / 2**20)) for r in ranks)} | "
                     f"{(result['out'] - reference).abs().max().item():.3g} |")
    iterations = results[1]["ranks"][0]["iterations"]
    command = "python benchmarks/fifo_distributed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "## FIFO across torch.distributed ranks (gloo, CPU)", "",
        f"Tiny reference VideoCrafter2 through ComfyUI's CFGGuider, f {args.video_length}, n {args.partitions}, "
        f"lookahead, eta 1, window_batch {args.window_batch}, {args.frames} output frames ({iterations} iterations), "
        f"{args.threads} torch thread(s) per rank, "
        f"one latent frame = {frame_bytes} bytes. Each iteration every rank all-gathers the written frames of every "
        f"window: f*n = {args.video_length * args.partitions} frames in all (at VideoCrafter2's 40x64 latent, "
        f"{args.video_length * args.partitions * 4 * 40 * 64 * 4 / 2**20:.1f} MiB in fp32), padded to equal shares "
        f"when K does not divide the window count. The K ranks share this machine's cores, so the seconds show "
        f"the overhead, not a speed-up: on K GPUs each rank computes 1/K of the windows.", "",
        *lines, "", f"`{command.strip()}`", "", machine_note()])
    print(text)
    print("written to", write_section("distributed", text))


if __name__ == "__main__":
    main()
