#!/usr/bin/env python3
"""Long-video quality of the bundled tiny model: FIFO-Diffusion against independent 16-frame clips.

Generates, with the bundled `models/fifo_infinity_tiny_vc2.safetensors` (loaded by the pack's VideoCrafter2
loader inside a real ComfyUI, in-process), from the same prompts and seeds:

  (a) FIFO      FIFO-Diffusion (`samplers.fifo.fifo_generate`: base clip, queue, diagonal denoising with
                latent partitioning and lookahead), N frames, the official steps;
  (a2) FIFO, rescaled steps
                the same with VideoCrafter2's scale_arr in the queue and every step (`FifoOptions.rescale`,
                the FIFO nodes' `rescale_steps`);
  (a3) FIFO, rescaled steps, n 8
                (a2) with 8 partitions instead of 4 (128 DDIM levels): each window spans 125 timesteps instead of
                250, closer to the one-timestep clips of training (FIFO-Diffusion paper, latent partitioning);
                what the bundled demo workflow runs;
  (b) clips     N/16 independent 16-frame clips (VideoCrafter2's own DDIM, the same grid, eta and CFG),
                concatenated: what a user would otherwise do;
  (c) FIFO + Q-cache  (a) with FIFO+'s weighted Q-cache (weight 0.9, temporal attn1, all decoder levels:
                the Weighted Q-Cache node's defaults) patched into the UNet;

  (d) Video-Infinity  the whole video as 16-frame clips sampled together with Video-Infinity's dual-scope
                attention and neighbour context (Apply Video-Infinity with the Context node's defaults, the
                official config), ComfyUI's KSampler (euler, ddim_uniform, 25 steps);

(FIFO+ latent seeding needs an image-to-video model with an image encoder; the bundled model is text-to-video,
so it has no row here.)

and measures on the decoded frames, with no downloaded weights (the world is plain: coloured shapes on a
flat dark background, so a colour detector is exact enough):

  visible        fraction of frames where an object is found (>= MIN_AREA saturated pixels)
  colour ok      fraction of frames whose dominant object colour is the prompted one
  colour drift   RGB distance between the mean object colour of the first and of the last 16 frames
  jumps          moves of the centroid between two consecutive frames with an object in both, longer than JUMP
                px (the world's fastest motion is 3.2 px per frame): an object replaced by one elsewhere from
                one frame to the next, or a cut between clips (moves to or from a frame without an object are
                not measured)
  max jump       the largest frame-to-frame move of the objects' centroid (all saturated pixels, pixels)
  jump@16        mean centroid move across 16-frame boundaries / mean move elsewhere (1 = seamless)
  flicker        VBench temporal flickering: mean over frames of (255 - MAE(frame_t, frame_t+1)) / 255
  warp error     mean |frame_t - warp(frame_t+1 -> t)| with OpenCV DIS optical flow (0-255)
  cuts           scene cuts found by PySceneDetect's ContentDetector (a seamless video has none)

It also samples 16-frame clips with ComfyUI's stock KSampler (euler or `--ksampler-sampler`, ddim_uniform)
for the model card's detector rates. Writes `benchmarks/results/quality.md` (tables), `quality.json` and
`quality_contact_sheet.png` (one row per method and prompt).

    python benchmarks/quality.py --comfyui <ComfyUI root> [--frames 256] [--cfg 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PACK_DIR, "benchmarks", "results")
MODEL = os.path.join(PACK_DIR, "models", "fifo_infinity_tiny_vc2.safetensors")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fifo_common import DEFAULT_COMFYUI, load_host  # noqa: E402

sys.path.insert(0, os.path.join(PACK_DIR, "tools"))
from cli_types import number  # noqa: E402

PALETTE = {"red": (225, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40)}
BACKGROUND = (40, 40, 48)
MIN_AREA = 20          # pixels of a 64x64 frame; the smallest trained object covers about 110
SATURATION = 70        # max(rgb) - min(rgb) of an object pixel; the background has 8
PROMPTS = [("a red ball bouncing", "red"), ("a blue square bouncing", "blue"),
           ("a yellow ball moving right", "yellow"), ("a green square bouncing", "green")]
CLIP = 16
JUMP = 8.0             # pixels per frame; 2.5 times the fastest trained motion (3.2 px per frame)
METHODS = ("FIFO", "FIFO, rescaled steps", "FIFO, rescaled steps, n 8", "clips", "FIFO + Q-cache", "Video-Infinity")
FIFO_PARTITIONS = {"FIFO": 4, "FIFO, rescaled steps": 4, "FIFO, rescaled steps, n 8": 8, "FIFO + Q-cache": 4}


# ----------------------------------------------------------------------------------------------------
# Metrics (frames: uint8 [T, H, W, 3] RGB)
# ----------------------------------------------------------------------------------------------------

def object_mask(frames: np.ndarray) -> np.ndarray:
    """bool [T, H, W]: saturated pixels (the background and anti-aliasing halos are grey)."""
    f = frames.astype(np.int16)
    return (f.max(-1) - f.min(-1)) >= SATURATION


def palette_labels(frames: np.ndarray) -> np.ndarray:
    """int [T, H, W]: index of the nearest palette colour (order of PALETTE) of every pixel."""
    colours = np.asarray(list(PALETTE.values()), dtype=np.float32)
    d = ((frames[..., None, :].astype(np.float32) - colours) ** 2).sum(-1)
    return d.argmin(-1)


def detect(frames: np.ndarray, colour: str | None = None) -> dict:
    """Per frame: visible, dominant palette colour, mean object RGB, centroid (x, y) of `colour`'s pixels.

    Coordinates are in pixels with pixel i covering [i, i + 1), so a centroid is comparable to the world's centres.
    """
    mask = object_mask(frames)
    labels = palette_labels(frames)
    names = list(PALETTE)
    t = frames.shape[0]
    visible = mask.reshape(t, -1).sum(1) >= MIN_AREA
    dominant, mean_rgb, centroids = [], np.full((t, 3), np.nan), np.full((t, 2), np.nan)
    for i in range(t):
        if not visible[i]:
            dominant.append(None)
            continue
        counts = np.bincount(labels[i][mask[i]], minlength=len(names))
        dominant.append(names[int(counts.argmax())])
        mean_rgb[i] = frames[i][mask[i]].mean(0)
        centroids[i] = centroid(mask[i] & (labels[i] == (names.index(colour) if colour else int(counts.argmax()))))
    return {"visible": visible, "dominant": dominant, "mean_rgb": mean_rgb, "centroids": centroids}


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) in pixels of a bool [H, W] mask's pixel centres (pixel i covers [i, i + 1)); NaN below MIN_AREA."""
    if mask.sum() < MIN_AREA:
        return (np.nan, np.nan)
    ys, xs = np.nonzero(mask)
    return (xs.mean() + 0.5, ys.mean() + 0.5)


def trajectory_jumps(centroids: np.ndarray, clip: int = CLIP) -> dict:
    """Largest centroid move between consecutive frames, mean moves across clip boundaries vs elsewhere, and the
    number of moves longer than JUMP pixels. `centroids`: [T, 2] (NaN where nothing is visible)."""
    moves = np.linalg.norm(np.diff(centroids, axis=0), axis=1)      # move i: frame i -> i + 1
    boundary = (np.arange(1, len(centroids)) % clip) == 0
    valid = ~np.isnan(moves)
    at_b, inside = moves[valid & boundary], moves[valid & ~boundary]
    return {"max_jump": float(moves[valid].max()) if valid.any() else float("nan"),
            "boundary_mean": float(at_b.mean()) if len(at_b) else float("nan"),
            "inside_mean": float(inside.mean()) if len(inside) else float("nan"),
            "boundary_ratio": float(at_b.mean() / max(inside.mean(), 1e-6)) if len(at_b) and len(inside) else float("nan"),
            "jumps": int((moves[valid] > JUMP).sum()),
            "tracked_pairs": int(valid.sum())}


def colour_drift(mean_rgb: np.ndarray, clip: int = CLIP) -> float:
    """RGB distance between the mean object colour of the first and the last `clip` frames (NaN-aware)."""
    first, last = mean_rgb[:clip], mean_rgb[-clip:]
    if np.isnan(first).all() or np.isnan(last).all():
        return float("nan")
    return float(np.linalg.norm(np.nanmean(first, 0) - np.nanmean(last, 0)))


def temporal_flickering(frames: np.ndarray) -> float:
    """VBench `temporal_flickering`: mean over consecutive pairs of (255 - mean |f_t - f_t+1|) / 255."""
    f = frames.astype(np.float32)
    mae = np.abs(f[1:] - f[:-1]).reshape(len(f) - 1, -1).mean(1)
    return float(((255.0 - mae) / 255.0).mean())


def warp_error(frames: np.ndarray) -> float:
    """Mean |frame_t - frame_t+1 warped back to t| (0-255), flow t -> t+1 by OpenCV DIS (preset medium)."""
    import cv2
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    h, w = frames.shape[1:3]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    errors = []
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    for t in range(len(frames) - 1):
        flow = dis.calc(grey[t], grey[t + 1], None)
        warped = cv2.remap(frames[t + 1], grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        errors.append(np.abs(warped.astype(np.float32) - frames[t].astype(np.float32)).mean())
    return float(np.mean(errors))


def scene_cuts(frames: np.ndarray) -> list[int]:
    """Frame numbers where PySceneDetect's ContentDetector (default threshold 27) starts a new scene."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector
    detector = ContentDetector(min_scene_len=4)
    cuts = []
    for i, frame in enumerate(frames):
        cuts += detector.process_frame(FrameTimecode(i, fps=8.0), np.ascontiguousarray(frame[..., ::-1]))
    numbers = [c.frame_num if hasattr(c, "frame_num") else int(c) for c in cuts]
    return [int(n) for n in numbers if n > 0]


def object_centroids(frames: np.ndarray) -> np.ndarray:
    """[T, 2] centroid (x, y) of all saturated pixels, whatever their colour (NaN where nothing is visible)."""
    return np.asarray([centroid(mask) for mask in object_mask(frames)], dtype=np.float64).reshape(len(frames), 2)


def measure(frames: np.ndarray, colour: str) -> dict:
    """All metrics of one video. The trajectory follows every saturated pixel (any colour), so continuity is
    measured even when the generated object does not have the prompted colour; `colour_ok` checks the colour."""
    det = detect(frames, colour)
    jumps = trajectory_jumps(object_centroids(frames))
    return {"visible": float(det["visible"].mean()),
            "colour_ok": float(np.mean([d == colour for d in det["dominant"]])),
            "colour_drift": colour_drift(det["mean_rgb"]),
            "jumps": jumps["jumps"], "max_jump": jumps["max_jump"], "jump_boundary": jumps["boundary_mean"],
            "jump_inside": jumps["inside_mean"], "jump_ratio": jumps["boundary_ratio"],
            "flicker": temporal_flickering(frames), "warp_error": warp_error(frames),
            "cuts": len(scene_cuts(frames))}


# ----------------------------------------------------------------------------------------------------
# Generation through the pack inside ComfyUI
# ----------------------------------------------------------------------------------------------------

class Generator:
    """The bundled model loaded once; text conditioning, CFG UNet, FIFO, clips, KSampler and decoding."""

    def __init__(self, comfyui: str, model_path: str = MODEL, cfg: float = 7.5, steps: int = 64, eta: float = 1.0,
                 partitions: int = 4):
        import torch
        self.nodes = load_host(comfyui)
        from fifo_infinity.videocrafter.loader import load_videocrafter
        self.torch = torch
        self.model, self.clip, self.vae, _ = load_videocrafter(model_path, dtype=torch.float32)
        self.unet = self.model.model.diffusion_model
        self.cfg, self.steps, self.eta, self.partitions = cfg, steps, eta, partitions
        self.uncond = self.encode("")
        self.size = 64

    def encode(self, text: str):
        return self.clip.encode_from_tokens(self.clip.tokenize(text)).float()

    def eps_model(self, cond, patches: dict | None = None):
        """CFG eps of the UNet; `patches`: a ModelPatcher's transformer_options["patches"] (e.g. the Q-cache's)."""
        torch = self.torch
        unet, uncond, cfg = self.unet, self.uncond, self.cfg
        options = {"video_length": CLIP, **({"patches": patches} if patches else {})}

        def eps(x, timesteps):
            n = x.shape[0]
            if cfg == 1.0:    # e_u + 1 * (e_c - e_u) = e_c: skip the unconditional pass, as ComfyUI's CFGGuider does
                with torch.no_grad():
                    return unet(x, timesteps.float(), context=cond.expand(n, -1, -1),
                                transformer_options=dict(options), fps=torch.full((n,), 8.0))
            context = torch.cat([cond.expand(n, -1, -1), uncond.expand(n, -1, -1)])
            with torch.no_grad():
                e = unet(torch.cat([x, x]), torch.cat([timesteps, timesteps]).float(), context=context,
                         transformer_options=dict(options), fps=torch.full((2 * n,), 8.0))
            e_c, e_u = e[:n], e[n:]
            return e_u + cfg * (e_c - e_u)
        return eps

    def fifo(self, prompt: str, frames: int, seed: int, qcache_weight: float | None = None, rescale: bool = False,
             partitions: int | None = None):
        from fifo_infinity.samplers import fifo
        patches = None
        if qcache_weight is not None:
            from fifo_infinity.bridge.qcache import apply_query_cache
            patched, _ = apply_query_cache(self.model, qcache_weight, "attn1", "temporal", "all")
            patches = patched.model_options["transformer_options"]["patches"]
        options = fifo.FifoOptions(video_length=CLIP, num_partitions=partitions or self.partitions, lookahead=True,
                                   eta=self.eta, rescale=rescale)
        noise = fifo.GeneratorNoise(seed)
        return fifo.fifo_generate(self.eps_model(self.encode(prompt), patches),
                                  fifo.FifoRun(options, frames, (4, self.size // 8, self.size // 8), noise))

    def clips(self, prompt: str, frames: int, seed: int):
        """frames/16 independent clips with VideoCrafter2's DDIM on the same grid (seed, seed+1, ...), concatenated."""
        from fifo_infinity.samplers import ddim
        torch = self.torch
        schedule = ddim.DDIMSchedule.build(self.steps, self.eta)
        eps = self.eps_model(self.encode(prompt))
        out = []
        for k in range(-(-frames // CLIP)):
            g = torch.Generator().manual_seed(seed + k)
            x_T = torch.randn((CLIP, 4, self.size // 8, self.size // 8), generator=g)
            out.append(ddim.sample_base_clip(eps, x_T, schedule,
                                             step_noise=lambda i, s, g=g: torch.randn(s, generator=g), rescale=True))
        return torch.cat(out)[:frames]

    def video_infinity(self, prompt: str, frames: int, seed: int, steps: int = 25):
        """All frames at once as 16-frame clips under Video-Infinity (Apply Video-Infinity), stock KSampler."""
        from fifo_infinity.nodes.infinity import FIFOInfinityApplyVideoInfinity, FIFOInfinityVideoInfinityContext
        inputs = FIFOInfinityVideoInfinityContext.INPUT_TYPES()["required"]
        options = {name: entry[1].get("default") for name, entry in inputs.items()}
        options["frames_per_clip"] = CLIP
        context = FIFOInfinityVideoInfinityContext.execute(**options).result[0]
        model = FIFOInfinityApplyVideoInfinity.execute(self.model, context).result[0]
        return self.ksampler(prompt, seed, steps=steps, frames=frames, model=model)

    def ksampler(self, prompt: str, seed: int, steps: int = 25, cfg: float | None = None, frames: int = CLIP,
                 model=None, sampler: str = "euler"):
        """`[frames, 4, 8, 8]` from ComfyUI's stock KSampler (`sampler`, ddim_uniform scheduler), in model space:
        a 16-frame clip by default; Video-Infinity passes the whole video and its patched `model`."""
        torch = self.torch
        positive = [[self.encode(prompt), {}]]
        negative = [[self.uncond, {}]]
        latent = {"samples": torch.zeros((frames, 4, self.size // 8, self.size // 8))}
        out = self.nodes.common_ksampler(model or self.model, seed, steps, self.cfg if cfg is None else cfg, sampler,
                                         "ddim_uniform", positive, negative, latent)[0]["samples"]
        return self.model.model.process_latent_in(out)   # model space, like the other two

    def decode(self, latents) -> np.ndarray:
        """uint8 [T, 64, 64, 3] from model-space latents."""
        images = self.vae.decode(self.model.model.process_latent_out(latents))
        images = images.reshape(-1, *images.shape[-3:])[..., :3]
        return (images.clamp(0, 1) * 255).round().to(self.torch.uint8).cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------

COLUMNS = [("visible", "visible", "{:.0%}"), ("colour_ok", "colour ok", "{:.0%}"),
           ("colour_drift", "colour drift (RGB)", "{:.1f}"), ("jumps", f"jumps > {JUMP:g} px", "{:.1f}"),
           ("max_jump", "max jump (px)", "{:.1f}"),
           ("jump_boundary", "mean jump at 16-frame boundaries (px)", "{:.2f}"),
           ("jump_inside", "mean jump elsewhere (px)", "{:.2f}"), ("jump_ratio", "boundary / elsewhere", "{:.2f}"),
           ("flicker", "VBench flickering (higher = steadier)", "{:.4f}"), ("warp_error", "DIS warp error", "{:.2f}"),
           ("cuts", "scene cuts", "{:.1f}")]


def fmt(value, pattern):
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else pattern.format(value)


def table(rows: list[dict], key_columns: list[tuple[str, str]]) -> str:
    header = [title for _, title in key_columns] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([str(row[k]) for k, _ in key_columns] +
                                        [fmt(row.get(k), p) for k, _, p in COLUMNS]) + " |")
    return "\n".join(lines)


def mean_rows(rows: list[dict], method: str) -> dict:
    mine = [r for r in rows if r["method"] == method]
    out = {"method": method, "prompt": "mean"}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in mine if not (isinstance(r[key], float) and np.isnan(r[key]))]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def contact_sheet(videos: list[tuple[str, np.ndarray]], path: str, columns: int = 16, scale: int = 2):
    """One row per (label, frames): `columns` frames evenly spaced, each upscaled `scale` x (nearest)."""
    from PIL import Image, ImageDraw
    size = 64 * scale
    label_w = 260
    sheet = Image.new("RGB", (label_w + columns * size, len(videos) * size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (label, frames) in enumerate(videos):
        picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        for c, i in enumerate(picks):
            tile = Image.fromarray(frames[i]).resize((size, size), Image.NEAREST)
            sheet.paste(tile, (label_w + c * size, r * size))
        draw.text((6, r * size + size // 2 - 12), label, fill=(0, 0, 0))
        draw.text((6, r * size + size // 2 + 2), f"frames {picks[0]}..{picks[-1]}", fill=(90, 90, 90))
    sheet.save(path)


def command_line(argv=None) -> str:
    """The command that reproduces this run (its arguments as given, --comfyui and --results left out)."""
    given = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for item in given:
        if skip:
            skip = False
            continue
        if item in ("--comfyui", "--results"):
            skip = True
            continue
        if item.startswith(("--comfyui=", "--results=")):
            continue
        kept.append(item if item.startswith("-") or " " not in item else repr(item))
    return " ".join(["python benchmarks/quality.py", *kept])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui", default=DEFAULT_COMFYUI)
    p.add_argument("--model", default=MODEL)
    p.add_argument("--frames", type=number(int, 2 * CLIP), default=256, help="frames per video (at least two clips)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--prompts", type=number(int, 1, len(PROMPTS)), default=len(PROMPTS),
                   help="how many of the fixed prompts to run (for every method and the KSampler rates)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance (the bundled model's: 1)")
    p.add_argument("--ksampler-seeds", type=number(int, 1), default=8, help="16-frame KSampler samples per prompt")
    p.add_argument("--threads", type=number(int, 1), default=None)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--quick", action="store_true", help="64 frames, 2 prompts, 2 KSampler seeds (a smoke run)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--ksampler-sampler", default="euler", help="the KSampler's sampler_name for the 16-frame clips")
    p.add_argument("--ksampler-only", action="store_true",
                   help="only the 16-frame KSampler detector rates (printed; nothing written)")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.prompts, args.ksampler_seeds = 64, 2, 2
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.results, exist_ok=True)
    started = time.time()
    gen = Generator(args.comfyui, args.model, cfg=args.cfg)
    rows, sheet, timings = [], [], {}
    def fifo(method, **options):
        return lambda prompt: gen.fifo(prompt, args.frames, args.seed, partitions=FIFO_PARTITIONS[method], **options)
    run = {"FIFO": fifo("FIFO"),
           "FIFO, rescaled steps": fifo("FIFO, rescaled steps", rescale=True),
           "FIFO, rescaled steps, n 8": fifo("FIFO, rescaled steps, n 8", rescale=True),
           "clips": lambda prompt: gen.clips(prompt, args.frames, args.seed),
           "FIFO + Q-cache": fifo("FIFO + Q-cache", qcache_weight=0.9),
           "Video-Infinity": lambda prompt: gen.video_infinity(prompt, args.frames, args.seed)}
    for prompt, colour in [] if args.ksampler_only else PROMPTS[:args.prompts]:
        for method in args.methods:
            t0 = time.time()
            latents = run[method](prompt)
            frames = gen.decode(latents)
            timings[f"{method} {prompt}"] = time.time() - t0
            row = {"method": method, "prompt": prompt, **measure(frames, colour)}
            rows.append(row)
            sheet.append((f"{method}: {prompt}", frames))
            print(f"[quality] {method} {prompt!r}: " + ", ".join(f"{k} {fmt(row[k], p)}" for k, _, p in COLUMNS)
                  + f" ({timings[f'{method} {prompt}']:.0f} s)", flush=True)
    ks_rows = []
    for prompt, colour in PROMPTS[:args.prompts]:
        per_seed = []
        for s in range(args.ksampler_seeds):
            frames = gen.decode(gen.ksampler(prompt, seed=args.seed + s, sampler=args.ksampler_sampler))
            det = detect(frames, colour)
            per_seed.append((float(det["visible"].mean()), float(np.mean([d == colour for d in det["dominant"]]))))
            if s == 0:
                sheet.append((f"KSampler 16 frames: {prompt}", frames))
        visible, colour_ok = np.mean(per_seed, axis=0)
        ks_rows.append({"prompt": prompt, "samples": args.ksampler_seeds, "visible": float(visible),
                        "colour_ok": float(colour_ok)})
        print(f"[quality] KSampler {prompt!r}: visible {visible:.0%}, colour ok {colour_ok:.0%}", flush=True)
    if args.ksampler_only:
        return ks_rows
    means = [mean_rows(rows, method) for method in args.methods]
    partitions = {m: FIFO_PARTITIONS[m] for m in args.methods if m in FIFO_PARTITIONS}
    result = {"command": command_line(argv), "frames": args.frames, "seed": args.seed, "cfg": args.cfg, "eta": 1.0,
              "fifo_partitions": partitions, "fifo_ddim_steps": {m: CLIP * n for m, n in partitions.items()},
              "rows": rows, "means": means, "ksampler": ks_rows, "timings_s": timings,
              "model": os.path.basename(args.model), "wall_seconds": time.time() - started}
    with open(os.path.join(args.results, "quality.json"), "w") as f:
        json.dump(result, f, indent=1)
    sheet_path = os.path.join(args.results, "quality_contact_sheet.png")
    contact_sheet(sheet, sheet_path)
    md = [f"# Long-video quality: bundled tiny model, {args.frames} frames",
          "",
          f"Command: `{result['command']}`. Model `{os.path.basename(args.model)}`; DDIM 64 levels (f 16 x n 4), "
          f"eta 1, CFG {args.cfg}, fps 8. FIFO: lookahead on, official queue initialisation. Clips: "
          f"{-(-args.frames // CLIP)} independent 16-frame clips (seeds {args.seed}..), VideoCrafter2's own DDIM. "
          f"FIFO, rescaled steps: the same with `rescale_steps` (VideoCrafter2's scale_arr in the queue and "
          f"every step; the official FIFO omits it); n 8: with 8 partitions (128 DDIM levels, windows spanning 125 "
          f"timesteps instead of 250), as the bundled demo workflow. FIFO + Q-cache: weight 0.9, temporal attn1, all decoder "
          f"levels. Video-Infinity: 16-frame clips, the official config, KSampler euler / ddim_uniform, 25 "
          f"steps. Latent seeding has no row: it needs an "
          f"image-to-video model (image encoder + image cross-attention) and the bundled model is text-to-video.",
          "",
          "## Means over prompts", "", table(means, [("method", "method")]), "",
          "## Per prompt", "", table(rows, [("method", "method"), ("prompt", "prompt")]), "",
          f"## Stock KSampler, 16-frame clips ({args.ksampler_sampler}, ddim_uniform, 25 steps)", "",
          "| prompt | samples | object visible (frames) | colour matches the prompt (frames) |", "|---|---|---|---|"]
    md += [f"| {r['prompt']} | {r['samples']} | {r['visible']:.0%} | {r['colour_ok']:.0%} |" for r in ks_rows]
    md += ["", "![contact sheet](quality_contact_sheet.png)", "",
           f"Wall time {result['wall_seconds'] / 60:.1f} min on the CPU."]
    with open(os.path.join(args.results, "quality.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"[quality] wrote {os.path.join(args.results, 'quality.md')} and {sheet_path}")


if __name__ == "__main__":
    main()
