#!/usr/bin/env python3
"""Video-Infinity end to end: the example workflow (shrunk for the tiny model) through the headless runner,
in one process and under torchrun with W ranks (gloo), and the workflow time of every rank.

Both runs execute the same graph (Video-Infinity Context, Apply Video-Infinity with devices empty,
SamplerCustomAdvanced with dpmpp_2m_sde, Video-Infinity VAE Decode, a save node); under torchrun each rank
denoises its share of the clips and rank 0 gathers the frames. Reported: the seconds each rank spent
executing the workflow (after start-up), the start-up-inclusive wall time, and the largest difference between
the two runs' latents.

    python benchmarks/video_infinity_speed.py [--ranks 2] [--frames-per-clip 8] [--steps 6] [--size 256 128] [--repeat 2]

Writes the section `speed` of benchmarks/results/video_infinity.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_infinity_common import DEFAULT_COMFYUI, PACK_DIR, machine_note, reference_dir, write_section  # noqa: E402


def prompt(args) -> dict:
    with open(os.path.join(PACK_DIR, "example_workflows", "api", "video_infinity_long_video.json")) as f:
        graph = json.load(f)
    f = args.frames_per_clip
    graph["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    graph["6"]["inputs"].update(width=args.size[0], height=args.size[1], frames=f * args.ranks)
    graph["7"]["inputs"].update(frames_per_clip=f, padding=min(8, f // 2), global_frames=min(16, f * args.ranks),
                                conv_context_frames=min(4, f))
    graph["12"]["inputs"]["steps"] = args.steps
    graph["17"] = {"class_type": "SaveLatent", "inputs": {"samples": ["14", 0], "filename_prefix": "bench/latent"}}
    return graph


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, work: str, ranks: int, attempt: int = 0, threads: int | None = None) -> dict:
    out = os.path.join(work, f"out{ranks}_{attempt}_{threads}")
    result = os.path.join(work, f"result{ranks}_{attempt}_{threads}.json")
    runner = [os.path.join(PACK_DIR, "run.py"), "--workflow", os.path.join(work, "workflow.json"), "--comfyui",
              args.comfyui, "--output-dir", out, "--extra-model-paths-config", os.path.join(work, "paths.yaml"),
              "--cpu", "--quiet", "--result-json", result]
    if ranks == 1:
        command = [sys.executable] + runner
    else:
        command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc-per-node", str(ranks),
                   "--master-addr", "127.0.0.1", "--master-port", str(free_port())] + runner
    threads = threads or max(1, (os.cpu_count() or 1) // ranks)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"run failed ({ranks} rank(s)):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = json.load(open(result))
    seconds = [r["seconds"] for r in summary["ranks"]] if "ranks" in summary else [summary["seconds"]]
    latent = next(f for f in summary["files"] if f.endswith(".latent"))
    return dict(ranks=ranks, threads=threads, seconds=seconds, wall=wall, latent=latent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2, help="W: clips = ranks (one clip per rank)")
    parser.add_argument("--frames-per-clip", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128], help="width height in pixels")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each layout")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    args = parser.parse_args()
    import safetensors.torch

    with tempfile.TemporaryDirectory() as work:
        models = os.path.join(work, "checkpoints")
        os.makedirs(models)
        os.symlink(os.path.join(reference_dir(), "tiny_vc2.safetensors"), os.path.join(models, "tiny_vc2.safetensors"))
        with open(os.path.join(work, "paths.yaml"), "w") as f:
            f.write(f"video_infinity_bench:\n  checkpoints: {models}\n")
        with open(os.path.join(work, "workflow.json"), "w") as f:
            json.dump(prompt(args), f)
        singles, single_threads, parallels = [], [], []
        for attempt in range(args.repeat):          # alternate, so every layout sees similar background load
            singles.append(run(args, work, 1, attempt))
            single_threads.append(run(args, work, 1, attempt, threads=1))
            parallels.append(run(args, work, args.ranks, attempt))
        a = safetensors.torch.load_file(singles[0]["latent"])["latent_tensor"]
        b = safetensors.torch.load_file(parallels[0]["latent"])["latent_tensor"]
        difference = (a - b).abs().max().item()
        largest = a.abs().max().item()

    f, w = args.frames_per_clip, args.ranks
    lines = [
        "## End to end: one process vs torchrun (gloo), one clip per rank",
        "",
        f"The example workflow with the tiny model: {w} clips of {f} frames ({w * f} frames) at "
        f"{args.size[0]}x{args.size[1]} px, {args.steps} dpmpp_2m_sde steps, CFG 12, through run.py. "
        "'workflow s' = seconds each rank spent executing the graph (model loading, text encoding, sampling, decode, "
        "gather, save); 'wall s' includes process start-up (ComfyUI import, built-in nodes).",
        "",
        "| run | layout | processes | threads/process | workflow s per rank | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for attempt, (single, one_thread, parallel) in enumerate(zip(singles, single_threads, parallels)):
        lines += [
            f"| {attempt + 1} | one process | 1 | {single['threads']} | {single['seconds'][0]:.1f} | {single['wall']:.1f} |",
            f"| {attempt + 1} | one process | 1 | 1 | {one_thread['seconds'][0]:.1f} | {one_thread['wall']:.1f} |",
            f"| {attempt + 1} | torchrun, gloo | {w} | {parallel['threads']} | "
            f"{' / '.join(f'{s:.1f}' for s in parallel['seconds'])} | {parallel['wall']:.1f} |"]
    lines += [
        "",
        f"Largest latent difference between the two runs: {difference:.3g} (values up to {largest:.3g}).",
        "",
        "Command:", "", "```",
        f"python benchmarks/video_infinity_speed.py --ranks {w} --frames-per-clip {f} --steps {args.steps} "
        f"--size {args.size[0]} {args.size[1]} --repeat {args.repeat}",
        "```", "", machine_note() + " Both layouts share the same 2 cores: the ranks split them (threads/process). "
        "Compare a rank with the one-process 1-thread row (the same work per core): on a shared CPU, intra-op "
        "threading suffers most from the other jobs, so the 2-thread row is the least reliable. On separate GPUs each "
        "rank has its own device and computes 1/W of the clips.", ""]
    print("\n".join(lines))
    print(f"wrote {write_section('speed', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
