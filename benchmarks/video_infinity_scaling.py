#!/usr/bin/env python3
"""Video-Infinity memory and speed against clip length F and clip count W (tiny reference VideoCrafter2, CPU).

For every F and W, two layouts, each measured in fresh processes:

- one process: the patched model runs all W clips in one call (`devices` empty);
- gloo, one rank per clip: W processes joined by torch.distributed (gloo), each computing one clip (the
  layout of the official code and of run.py under torchrun).

Every process loads ComfyUI's model code and the tiny model, patches it with Apply Video-Infinity's
function, and calls the diffusion model on a cond+uncond batch of the long latent `[2*W*F, 4, h, w]`
(timestep 500) `--repeat` times after one warm-up call. It reports its RSS after loading (baseline), its
peak RSS during the calls (the kernel's VmHWM, reset after loading) and the seconds per call. The claim to
check: the per-process peak grows with F, not with W, when each rank holds one clip; in one process it
grows with W*F.

    python benchmarks/video_infinity_scaling.py [--frames-per-clip 8 16] [--clips 1 2 4] [--latent 16 32]

Writes the section `scaling` of benchmarks/results/video_infinity.md (the table, the command, the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import bootstrap  # noqa: E402
from video_infinity_common import DEFAULT_COMFYUI, machine_note, reference_dir, write_section  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def process_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> None:
    """Reset the kernel's high-water mark (VmHWM) so the peak of the calls alone can be read."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_since_reset() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def load_pack(comfyui: str):
    """ComfyUI's `comfy` on sys.path in CPU mode (its `nodes` is not imported) and the pack as `fifo_infinity`."""
    bootstrap.use_comfyui(comfyui)
    bootstrap.register_pack()


def measure(comfyui: str, f: int, clips: int, latent_hw, repeat: int) -> dict:
    """One process's measurement (the transport is chosen by the patch: torch.distributed if initialised)."""
    import torch
    load_pack(comfyui)
    import comfy.patcher_extension as extension
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions
    from fifo_infinity.videocrafter.loader import load_videocrafter
    folder = reference_dir()
    with open(os.path.join(folder, "manifest.json")) as handle:
        manifest = json.load(handle)
    model = load_videocrafter(os.path.join(folder, "tiny_vc2.safetensors"), text_heads=manifest["text_encoder"]["heads"],
                              dtype=torch.float32)[0]
    options = VideoInfinityOptions(frames_per_clip=f, padding=min(8, f // 2), global_frames=min(16, clips * f),
                                   conv_context_frames=min(4, f))
    patched = apply_video_infinity(model, options, "")
    generator = torch.Generator().manual_seed(0)
    rows = 2 * clips * f
    x = torch.randn(rows, 4, *latent_hw, generator=generator)
    t = torch.full((rows,), 500.0)
    context = torch.randn(rows, 77, manifest["unet"]["context_dim"], generator=generator)
    transformer_options = extension.copy_nested_dicts(patched.model_options["transformer_options"])
    extension.merge_nested_dicts(transformer_options.setdefault("wrappers", {}), patched.wrappers, copy_dict1=False)
    transformer_options["cond_or_uncond"] = [0, 1]
    unet = patched.model.diffusion_model
    baseline = rss_bytes()
    reset_peak()
    seconds = []
    with torch.inference_mode():
        for i in range(repeat + 1):
            start = time.perf_counter()
            unet(x, t, context=context, transformer_options=dict(transformer_options))
            if i:
                seconds.append(time.perf_counter() - start)
    return {"baseline_rss": baseline, "peak_rss": peak_since_reset(), "process_peak": process_peak_bytes(),
            "seconds": sorted(seconds)[len(seconds) // 2],
            "threads": torch.get_num_threads()}


def rank_main(rank, world, init, comfyui, f, latent_hw, repeat, threads, out_dir):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    result = measure(comfyui, f, world, latent_hw, repeat)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.barrier()
    dist.destroy_process_group()


def child(args) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    latent_hw = tuple(args.latent)
    if args.child == "single":
        result = {"processes": [measure(args.comfyui, args.f, args.w, latent_hw, args.repeat)]}
    else:
        import torch.multiprocessing as mp
        threads = max(1, (os.cpu_count() or 1) // args.w)
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(rank_main, args=(args.w, "file://" + os.path.join(tmp, "rdv"), args.comfyui, args.f, latent_hw,
                                      args.repeat, threads, tmp), nprocs=args.w, join=True)
            result = {"processes": [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(args.w)]}
    print("RESULT " + json.dumps(result), flush=True)


def run_child(args, layout: str, f: int, w: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", layout, "--f", str(f), "--w", str(w),
               "--latent", *map(str, args.latent), "--repeat", str(args.repeat), "--comfyui", args.comfyui]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"measurement failed ({layout}, F={f}, W={w}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def mib(n: float) -> str:
    return f"{n / 2 ** 20:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames-per-clip", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--clips", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latent", type=int, nargs=2, default=[16, 32], help="latent h w (default 16 32 = 128x256 px)")
    parser.add_argument("--repeat", type=int, default=2, help="timed calls after the warm-up call")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--child", choices=["single", "gloo"], help=argparse.SUPPRESS)
    parser.add_argument("--f", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--w", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    rows = []
    for f in args.frames_per_clip:
        for w in args.clips:
            for layout in ("single", "gloo") if w > 1 else ("single",):
                result = run_child(args, layout, f, w)
                processes = result["processes"]
                rows.append(dict(f=f, w=w, layout=layout, n=len(processes),
                                 peak=max(p["peak_rss"] for p in processes),
                                 growth=max(p["peak_rss"] - p["baseline_rss"] for p in processes),
                                 seconds=max(p["seconds"] for p in processes), threads=processes[0]["threads"]))
                print(json.dumps(rows[-1]), flush=True)

    lines = [
        "## Memory and time against clip length F and clip count W",
        "",
        "Tiny reference VideoCrafter2 (fp32, CPU), latent "
        f"{args.latent[0]}x{args.latent[1]} ({args.latent[1] * 8}x{args.latent[0] * 8} px), cond+uncond batch, "
        "padding min(8, F/2), global_frames min(16, W*F), conv context 4, one diffusion-model call at t = 500 "
        f"(median of {args.repeat} after a warm-up). `one process` = all W clips in one call; `gloo` = W processes, one "
        "clip each (torch.distributed, gloo; W = 1 is one process either way, so it has one row). Peak RSS = the high-water mark of each "
        "process during the calls (VmHWM, reset after loading; the largest over the ranks); growth = that peak minus "
        "the RSS after loading ComfyUI and the model, i.e. what the W*F frames cost.",
        "",
        "| F | W | layout | processes | threads/process | peak RSS per process (MiB) | growth over baseline (MiB) | s per call (slowest process) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = "one process" if r["layout"] == "single" else "gloo, 1 clip/rank"
        lines.append(f"| {r['f']} | {r['w']} | {label} | {r['n']} | {r['threads']} | {mib(r['peak'])} | {mib(r['growth'])} | "
                     f"{r['seconds']:.2f} |")
    lines += ["", "Command:", "", "```",
              f"python benchmarks/video_infinity_scaling.py --frames-per-clip {' '.join(map(str, args.frames_per_clip))} "
              f"--clips {' '.join(map(str, args.clips))} --latent {args.latent[0]} {args.latent[1]} --repeat {args.repeat}",
              "```", "", machine_note() + " With W ranks on the 2 cores each rank gets 2 // W threads (at least 1), "
              "so W = 4 oversubscribes the CPU: its times show contention, not scaling.", ""]
    print(f"wrote {write_section('scaling', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
