"""Shared set-up of the FIFO benchmarks: a real ComfyUI in-process with the pack, the tiny reference model,
and one FIFO sampling through ComfyUI's CFGGuider with the FIFO SAMPLER (the path users run)."""

from __future__ import annotations

import json
import os
import re
import sys
import time

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


sys.path.append(os.path.join(PACK_DIR, "tools"))
from pack_bootstrap import ReferenceNotFound, bootstrap, find_reference  # noqa: E402  the pack's host_bootstrap.py
RESULTS = os.path.join(PACK_DIR, "benchmarks", "results")
DEFAULT_COMFYUI = os.environ.get("FIFO_COMFYUI_ROOT") or os.environ.get("COMFYUI_PATH") or \
    os.path.expanduser("~/.cache/fifo-infinity/comfyui-0.3.75")


def reference_dir() -> str:
    """The vc2_tiny reference fixtures (pack_bootstrap.find_reference: $FIFO_REFERENCE_DIR, ../shared/reference/...)."""
    try:
        return find_reference("vc2_tiny")
    except ReferenceNotFound as error:
        raise SystemExit(str(error)) from None


def load_host(comfyui: str):
    """ComfyUI's `nodes` module (CPU mode, built-in extra nodes) and the pack imported as `fifo_infinity`
    (not loaded as a custom node: the benchmarks call the pack's code directly)."""
    return bootstrap.load_host(comfyui, pack=False)


class TinyFifo:
    """The tiny reference VideoCrafter2 (fp32, CPU) and its prompts; `run()` samples one FIFO video through
    ComfyUI and returns the output plus timings (wall seconds in total and inside the UNet forward)."""

    def __init__(self, comfyui: str = DEFAULT_COMFYUI):
        import safetensors.torch
        import torch
        load_host(comfyui)
        from fifo_infinity.videocrafter.loader import load_videocrafter
        self.torch = torch
        folder = reference_dir()
        with open(os.path.join(folder, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.model, _, _, _ = load_videocrafter(os.path.join(folder, "tiny_vc2.safetensors"),
                                                text_heads=self.manifest["text_encoder"]["heads"], dtype=torch.float32)
        embeddings = safetensors.torch.load_file(os.path.join(folder, "stages.safetensors"))["text.embeddings"]
        fps = self.manifest["fifo"]["fps"]
        self.positive = [[embeddings[1:2], {"fps": fps}]]
        self.negative = [[embeddings[0:1], {"fps": fps}]]
        self.frame_shape = (4, *self.manifest["latent_hw"])

    def run(self, frames: int, video_length: int, partitions: int, window_batch: int, eta: float = 1.0,
            seed: int = 0, lookahead: bool = True, base_clip=None, stop_after: int | None = None):
        """Sample N = `frames` frames (base clip: model-space `[f, 4, h, w]` or None to sample one). With
        `stop_after`, stop after that many FIFO iterations (timings cover what ran; no output).

        Returns (output or None, timings): wall seconds `total`, `base` (base clip), `fifo` (iterations),
        `unet` / `unet_fifo` (inside the UNet forward: all / during the iterations), `iterations` run."""
        import comfy.patcher_extension
        import comfy.samplers
        from fifo_infinity.bridge.fifo import FifoSampler, fifo_model, fifo_sigmas
        from fifo_infinity.samplers.fifo import FifoOptions
        torch = self.torch
        options = FifoOptions(video_length=video_length, num_partitions=partitions, lookahead=lookahead, eta=eta,
                              window_batch=window_batch)
        unet = {"seconds": 0.0, "calls": 0}

        def time_unet(executor, *args, **kwargs):
            start = time.perf_counter()
            out = executor(*args, **kwargs)
            unet["seconds"] += time.perf_counter() - start
            unet["calls"] += 1
            return out

        model = fifo_model(self.model)
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "benchmark_timer", time_unet)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(self.positive, self.negative)
        guider.set_cfg(self.manifest["fifo"]["cfg_scale"])
        latent = torch.zeros(frames, *self.frame_shape)
        sigmas = fifo_sigmas(model.get_model_object("model_sampling"), options)
        base_steps = options.steps if base_clip is None else 0
        stamps = []          # (time, UNet seconds so far) at every callback

        def callback(step, x0, x, total):
            stamps.append((time.perf_counter(), unet["seconds"]))
            if stop_after is not None and len(stamps) == base_steps + stop_after:
                raise _Stop()

        base = None if base_clip is None else model.model.process_latent_out(base_clip)
        start = time.perf_counter()
        out = None
        try:
            out = guider.sample(torch.zeros_like(latent), latent, FifoSampler(options, base), sigmas, seed=seed,
                                disable_pbar=True, callback=callback)
        except _Stop:
            pass
        end = time.perf_counter()
        base_end, unet_at_base = stamps[base_steps - 1] if base_steps else (start, 0.0)
        iterations = len(stamps) - base_steps if stop_after is not None else options.iterations(frames)
        return out, dict(total=end - start, base=base_end - start, fifo=end - base_end, unet=unet["seconds"],
                         unet_fifo=unet["seconds"] - unet_at_base, unet_calls=unet["calls"], iterations=iterations,
                         base_steps=base_steps)


class _Stop(Exception):
    """Raised from the sampling callback to end a timing run early."""


def machine_note() -> str:
    """One sentence on the machine and its load (absolute times on shared cores are noisy)."""
    import torch
    load = os.getloadavg()
    return (f"CPU: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s); "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (other jobs share these cores, "
            f"so absolute times are noisy; ratios are measured within one run)")


def write_section(name: str, text: str, filename: str = "fifo.md",
                  title: str = "# FIFO-Diffusion benchmarks (tiny reference model, CPU)") -> str:
    """Replace (or append) the section `name` of benchmarks/results/`filename` (created with `title`); returns
    the file's path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, filename)
    body = open(path).read() if os.path.exists(path) else title + "\n"
    block = f"<!-- {name} -->\n{text.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(body)
    return path
