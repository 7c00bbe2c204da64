#!/usr/bin/env python3
"""The UNet's own speed against the UNet as of a baseline commit, on the tiny reference VideoCrafter2 (CPU).

Both UNets are built from the same weights (the baseline's `videocrafter/unet.py` is read from git history, so
this needs the repository's history) and called the way the official FIFO code calls its UNet: one video of
f = 16 frames per call, one timestep per frame. Rows alternate in rounds within one run (the machine is shared
and noisy); the table gives the minimum and the median seconds per call, baseline / now, and the largest
difference between the two outputs. The spatial attention is the host's choice in both (ComfyUI's attention
selection; `--pytorch-attention` sets what ComfyUI picks on NVIDIA GPUs, PyTorch's SDPA).

Writes benchmarks/results/fifo.md, section `unet_speed`, with the command.

    python benchmarks/unet_speed.py [--baseline 20d112a] [--latents 8x16 32x32 40x64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, PACK_DIR, TinyFifo, machine_note, write_section  # noqa: E402

# The last commit before the issue "Faster than the official FIFO, in half precision, and ready for a GPU".
DEFAULT_BASELINE = "20d112a"


def baseline_unet_module(commit: str):
    """The module `videocrafter/unet.py` as of `commit`, imported from a temporary copy."""
    source = subprocess.run(["git", "-C", PACK_DIR, "show", f"{commit}:videocrafter/unet.py"], check=True,
                            capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="unet_baseline_")
    path = os.path.join(folder, "unet_baseline.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("fifo_infinity.videocrafter.unet_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git commit of the baseline UNet")
    parser.add_argument("--latents", nargs="+", default=["8x16", "32x32", "40x64"], help="latent h x w")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pytorch-attention", action="store_true",
                        help="ComfyUI's --use-pytorch-cross-attention (its choice on NVIDIA) for both UNets")
    parser.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = TinyFifo(args.comfyui)
    import comfy.ldm.modules.attention as attention
    import comfy.model_management
    import comfy.ops
    from fifo_infinity.videocrafter.convert import infer_unet_config
    baseline_module = baseline_unet_module(args.baseline)
    if args.pytorch_attention:
        comfy.model_management.ENABLE_PYTORCH_ATTENTION = True
        attention.optimized_attention = baseline_module.optimized_attention = attention.attention_pytorch
    current = bench.model.model.diffusion_model
    state = current.state_dict()
    config = infer_unet_config(state)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    f = bench.manifest["fifo"]["video_length_f"]
    context_dim = config["context_dim"]

    lines = [
        "## The UNet alone (one video of f frames per call, as the official FIFO calls it)",
        "",
        f"Tiny reference VideoCrafter2, f = {f} frames per call, one timestep per frame, CPU; baseline = "
        f"`videocrafter/unet.py` at {args.baseline}; spatial attention "
        f"{'PyTorch SDPA (ComfyUI on NVIDIA)' if args.pytorch_attention else 'the host default on the CPU (sub-quadratic)'} "
        f"in both; {args.rounds} rounds, rows alternating.",
        "",
        "| latent | dtype | baseline s / call (min, median) | now s / call (min, median) | baseline / now (min) | "
        "max abs difference (max abs output) |",
        "|---|---|---|---|---|---|",
    ]
    for dtype_name in args.dtypes:
        dtype = dtypes[dtype_name]
        baseline = baseline_module.UNet3D(**config, dtype=dtype, operations=comfy.ops.disable_weight_init)
        baseline.load_state_dict(state)
        baseline.eval()
        now = type(current)(**config, dtype=dtype, operations=comfy.ops.disable_weight_init)
        now.load_state_dict(state)
        now.eval()
        for latent in args.latents:
            h, w = map(int, latent.split("x"))
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(f, 4, h, w, generator=generator).to(dtype)
            timesteps = torch.linspace(999, 15, f)
            context = torch.randn(1, 77, context_dim, generator=generator).to(dtype)
            times = {"baseline": [], "now": []}
            outputs = {}
            with torch.no_grad():
                for round_index in range(args.rounds + 1):
                    for name, unet in (("baseline", baseline), ("now", now)):
                        start = time.perf_counter()
                        outputs[name] = unet(x, timesteps, context, transformer_options={"video_length": f})
                        if round_index:               # round 0 warms up
                            times[name].append(time.perf_counter() - start)
            difference = (outputs["now"].float() - outputs["baseline"].float()).abs().max().item()
            scale = outputs["baseline"].float().abs().max().item()
            b, n = times["baseline"], times["now"]
            row = (f"| {latent} | {dtype_name} | {min(b):.3f}, {statistics.median(b):.3f} | {min(n):.3f}, "
                   f"{statistics.median(n):.3f} | {min(b) / min(n):.2f}x | {difference:.2g} ({scale:.2g}) |")
            print(row, flush=True)
            lines.append(row)
    lines += ["", machine_note(), "",
              "Command: `python benchmarks/unet_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]) + "`"]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("written to", write_section("unet_speed", text))


if __name__ == "__main__":
    main()
