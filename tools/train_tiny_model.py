#!/usr/bin/env python3
"""Train the bundled tiny VideoCrafter2-format model on a synthetic world of bouncing shapes.

The world: 64x64 frames, 16-frame clips, one or two objects (red, green, blue, yellow; ball or square) moving
in straight lines and bouncing off the walls on a plain dark background, with captions naming them
("a red ball bouncing", "a blue square moving left", "a red ball and a green square").

Three models, all in VideoCrafter2's checkpoint layout and training conventions:

1. `cond_stage_model.model.*`: a small OpenCLIP-format text tower (width 64, one 64-wide head, 3 layers),
   randomly initialised from the seed and frozen. Captions are tokenised with ComfyUI's CLIP BPE
   tokenizer and encoded by ComfyUI's SD2 CLIP built from this very state dict (`videocrafter.loader.build_clip`,
   penultimate layer + `ln_final`), so training sees exactly the features inference computes.
2. `first_stage_model.*`: a small SD-style KL-f8 autoencoder (64x64x3 <-> 8x8x4), ComfyUI's `AutoencoderKL`
   (L1 + MSE + a small KL term, trained on 32x32 crops: it is fully convolutional). After training, its
   latent is rescaled exactly (quant_conv / post_quant_conv) so that `latent * 0.18215` has unit variance,
   as the SD latent format ComfyUI applies expects.
3. `model.diffusion_model.*`: our `videocrafter.unet.UNet3D` (ComfyUI layers, VideoCrafter2 keys), trained
   with EPS prediction on VideoCrafter2's linear betas (0.00085..0.012, 1000 steps) and its rescaled forward
   process `x_t = sqrt(a_t) * scale_arr[t] * x0 + sqrt(1 - a_t) * eps`, fps conditioning (8), and
   classifier-free dropout of the text (the empty-prompt embedding). One timestep per clip, as
   VideoCrafter2; a quarter of the clips instead get a per-frame timestep ramp (the spread of one FIFO
   window), so the model also sees the diagonal noise levels FIFO-Diffusion feeds it.

The run is resumable: every few minutes a checkpoint (models, optimisers, EMA, step, phase, RNG states of
the data generator and of torch) goes to `--cache-dir`; starting the script again continues from it.
The UNet trains on a pool of pre-encoded clips (encoded once per run, stored in the cache dir), sampled
with a seeded torch generator, with time reversal as augmentation (the caption's direction flips).

    python tools/train_tiny_model.py                  # train (or resume) and export at the end
    python tools/train_tiny_model.py --export-only    # export the latest checkpoint now
    python tools/train_tiny_model.py --smoke --cache-dir /tmp/smoke --steps 3   # a few steps, never exported

Export: fp16 weights (float32 schedule buffers), keys exactly as VideoCrafter2's `model.ckpt` state dict;
the UNet weights are the EMA weights. A finished run goes to `models/fifo_infinity_tiny_vc2.safetensors` (the
bundled model), an unfinished one to `unfinished.safetensors` in the cache dir, unless `--out` says where.
The loss log (every `--log-every`th step) goes to `loss.csv` in the cache dir unless `--loss-log` says where
(the shipped run's log is `models/fifo_infinity_tiny_vc2_loss.csv`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_types import number  # noqa: E402

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_COMFYUI = os.path.expanduser("~/.cache/fifo-infinity/comfyui-0.3.75")
DEFAULT_CACHE = os.path.expanduser("~/.cache/fifo-infinity/train/tiny_vc2")
BUNDLED_MODEL = os.path.join(PACK_DIR, "models", "fifo_infinity_tiny_vc2.safetensors")

# ----------------------------------------------------------------------------------------------------
# The synthetic world
# ----------------------------------------------------------------------------------------------------

SIZE = 64
FRAMES = 16
FPS = 8
BACKGROUND = (40, 40, 48)
COLOURS = {"red": (225, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40)}
SHAPES = ("ball", "square")
MOTIONS = ("bouncing", "moving left", "moving right", "moving up", "moving down")
REVERSED_MOTION = {"bouncing": "bouncing", "moving left": "moving right", "moving right": "moving left",
                   "moving up": "moving down", "moving down": "moving up", "": ""}


def all_captions() -> list[str]:
    """Every caption the generator can produce, the empty prompt first (a fixed, finite list)."""
    captions = [""]
    for colour in COLOURS:
        for shape in SHAPES:
            captions.append(f"a {colour} {shape}")
            captions += [f"a {colour} {shape} {motion}" for motion in MOTIONS]
    for c1 in COLOURS:
        for s1 in SHAPES:
            for c2 in COLOURS:
                for s2 in SHAPES:
                    if c2 != c1:
                        captions.append(f"a {c1} {s1} and a {c2} {s2}")
    return captions


def caption_reversed(caption: str) -> str:
    """The caption of the same clip played backwards (directions flip; 'bouncing' stays)."""
    for motion in ("moving left", "moving right", "moving up", "moving down"):
        if caption.endswith(motion):
            return caption[: -len(motion)] + REVERSED_MOTION[motion]
    return caption


def _simulate(rng: np.random.Generator, frames: int):
    """One object's trajectory: (centres [frames, 2] as (x, y), radius, bounced, velocity)."""
    radius = float(rng.uniform(6.0, 9.5))
    x, y = rng.uniform(radius, SIZE - radius, size=2)
    speed = float(rng.uniform(1.0, 3.2))
    angle = float(rng.uniform(0, 2 * math.pi))
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    v0 = (vx, vy)
    centres, bounced = [], False
    for i in range(frames):
        centres.append((x, y))
        if i == frames - 1:
            break                        # a bounce after the last frame is not in the clip: no "bouncing" caption
        x, y = x + vx, y + vy
        if x < radius or x > SIZE - radius:
            vx, bounced = -vx, True
            x = 2 * radius - x if x < radius else 2 * (SIZE - radius) - x
        if y < radius or y > SIZE - radius:
            vy, bounced = -vy, True
            y = 2 * radius - y if y < radius else 2 * (SIZE - radius) - y
    return np.asarray(centres, dtype=np.float32), radius, bounced, v0


_GRID_Y, _GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def render(objects, frames: int) -> np.ndarray:
    """uint8 `[frames, 64, 64, 3]` of anti-aliased shapes over the plain background, later objects on top."""
    video = np.empty((frames, SIZE, SIZE, 3), dtype=np.float32)
    video[:] = np.asarray(BACKGROUND, dtype=np.float32)
    for obj in objects:
        colour = np.asarray(COLOURS[obj["colour"]], dtype=np.float32)
        r = obj["radius"]
        for f in range(frames):
            cx, cy = obj["centres"][f]
            dx, dy = _GRID_X - cx, _GRID_Y - cy
            dist = np.sqrt(dx * dx + dy * dy) if obj["shape"] == "ball" else np.maximum(np.abs(dx), np.abs(dy)) * 1.0
            size = r if obj["shape"] == "ball" else r * 0.9
            alpha = np.clip(size + 0.5 - dist, 0.0, 1.0)[..., None]
            video[f] = video[f] * (1 - alpha) + colour * alpha
    return np.clip(video + 0.5, 0, 255).astype(np.uint8)


def motion_word(bounced: bool, velocity) -> str:
    if bounced:
        return "bouncing"
    vx, vy = velocity
    if abs(vx) >= abs(vy):
        return "moving right" if vx > 0 else "moving left"
    return "moving down" if vy > 0 else "moving up"


def make_clip(rng: np.random.Generator, frames: int = FRAMES):
    """(uint8 video `[frames, 64, 64, 3]`, caption, objects) drawn from the world's distribution."""
    n_objects = 1 if rng.random() < 0.7 else 2
    colours = list(rng.choice(list(COLOURS), size=n_objects, replace=False))
    objects = []
    for colour in colours:
        centres, radius, bounced, velocity = _simulate(rng, frames)
        objects.append({"colour": str(colour), "shape": str(SHAPES[int(rng.integers(len(SHAPES)))]),
                        "centres": centres, "radius": radius, "bounced": bounced, "velocity": velocity})
    if n_objects == 1:
        o = objects[0]
        caption = f"a {o['colour']} {o['shape']}"
        if rng.random() < 0.85:
            caption += " " + motion_word(o["bounced"], o["velocity"])
    else:
        caption = " and ".join(f"a {o['colour']} {o['shape']}" for o in objects)
    return render(objects, frames), caption, objects


# ----------------------------------------------------------------------------------------------------
# Model definitions
# ----------------------------------------------------------------------------------------------------

TEXT = {"width": 64, "layers": 3, "mlp_width": 256, "context_length": 77, "vocab_size": 49408, "projection_dim": 64}
VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
UNET = {"in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [1, 2],
        "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16, "transformer_depth": 1,
        "context_dim": 64, "use_linear": True, "temporal_conv": True, "temporal_attention": True,
        "addition_attention": True, "fps_cond": True}
LATENT_SCALE = 0.18215



def setup_comfy(comfyui: str):
    """Put ComfyUI on sys.path (CPU mode) and make the pack importable; returns the pack's package name."""
    from pack_bootstrap import bootstrap
    bootstrap.use_comfyui(comfyui)
    name = "fifo_infinity_train"
    # a bare package over the pack folder: the videocrafter/ and samplers/ modules this tool imports, without
    # running the pack's __init__ (the ComfyUI entry point)
    bootstrap.register_pack(name, run_init=False)
    return name


def torch_ops():
    """An `operations` namespace backed by plain torch.nn layers with their normal initialisation."""
    import torch.nn as nn

    class Ops:
        Linear = nn.Linear
        Conv1d = nn.Conv1d
        Conv2d = nn.Conv2d
        Conv3d = nn.Conv3d
        GroupNorm = nn.GroupNorm
        LayerNorm = nn.LayerNorm

        @staticmethod
        def conv_nd(dims, *args, **kwargs):
            return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](*args, **kwargs)

    return Ops


def reset_parameters(module):
    """Give every ComfyUI `disable_weight_init` layer its torch default initialisation (seeded by the caller)."""
    import torch.nn as nn
    for m in module.modules():
        for base in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm):
            if isinstance(m, base):
                base.reset_parameters(m)
                break


def random_text_tower(seed: int) -> dict:
    """OpenCLIP text tower state dict (`cond_stage_model.model.*` without the prefix), open_clip's init."""
    import torch
    g = torch.Generator().manual_seed(seed)
    w, layers, mlp = TEXT["width"], TEXT["layers"], TEXT["mlp_width"]
    proj_std = (w ** -0.5) * ((2 * layers) ** -0.5)
    attn_std, fc_std = w ** -0.5, (2 * w) ** -0.5

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    sd = {"token_embedding.weight": normal((TEXT["vocab_size"], w), 0.02),
          "positional_embedding": normal((TEXT["context_length"], w), 0.01)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "ln_1.weight": torch.ones(w), p + "ln_1.bias": torch.zeros(w),
                   p + "attn.in_proj_weight": normal((3 * w, w), attn_std), p + "attn.in_proj_bias": torch.zeros(3 * w),
                   p + "attn.out_proj.weight": normal((w, w), proj_std), p + "attn.out_proj.bias": torch.zeros(w),
                   p + "ln_2.weight": torch.ones(w), p + "ln_2.bias": torch.zeros(w),
                   p + "mlp.c_fc.weight": normal((mlp, w), fc_std), p + "mlp.c_fc.bias": torch.zeros(mlp),
                   p + "mlp.c_proj.weight": normal((w, mlp), proj_std), p + "mlp.c_proj.bias": torch.zeros(w)})
    sd.update({"ln_final.weight": torch.ones(w), "ln_final.bias": torch.zeros(w),
               "text_projection": normal((w, TEXT["projection_dim"]), w ** -0.5),
               "logit_scale": torch.tensor(math.log(1 / 0.07))})
    return sd


def text_embeddings(pkg: str, text_sd: dict, captions: list[str]):
    """`[len(captions), 77, 64]` float32: ComfyUI's SD2 CLIP (built from `text_sd`) on each caption."""
    import importlib
    import torch
    loader = importlib.import_module(f"{pkg}.videocrafter.loader")
    clip = loader.build_clip({k: v.half().float() for k, v in text_sd.items()})  # fp16-rounded, as exported
    out = []
    with torch.no_grad():
        for caption in captions:
            cond = clip.encode_from_tokens(clip.tokenize(caption))
            out.append(cond[0].float() if cond.ndim == 3 else cond.float())
    return torch.stack(out)


def build_vae(seed: int):
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    torch.manual_seed(seed)
    vae = AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    reset_parameters(vae)
    return vae


def build_unet(pkg: str, seed: int, config: dict):
    import importlib
    import torch
    unet_module = importlib.import_module(f"{pkg}.videocrafter.unet")
    torch.manual_seed(seed)
    return unet_module.UNet3D(**config, operations=torch_ops())


# ----------------------------------------------------------------------------------------------------
# Schedule (VideoCrafter2)
# ----------------------------------------------------------------------------------------------------

def schedule_buffers(pkg: str) -> dict:
    """The float32 schedule buffers of VideoCrafter2's `DDPM.register_schedule` (v_posterior 0), plus scale_arr.

    `pkg`: the pack's package name from `setup_comfy`; the betas and scale_arr are the pack's own
    (`samplers.ddim`, the schedule inference uses). Each buffer `[1000]` (scale_arr `[1400]`).
    """
    import importlib
    import torch
    ddim = importlib.import_module(f"{pkg}.samplers.ddim")
    betas = ddim.linear_betas()
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    out = {"betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
           "sqrt_alphas_cumprod": ac.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - ac).sqrt(),
           "log_one_minus_alphas_cumprod": (1 - ac).log(), "sqrt_recip_alphas_cumprod": (1 / ac).sqrt(),
           "sqrt_recipm1_alphas_cumprod": (1 / ac - 1).sqrt(), "posterior_variance": posterior_variance,
           "posterior_log_variance_clipped": torch.log(torch.clamp(posterior_variance, min=1e-20)),
           "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
           "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac)}
    return {**{k: v.float() for k, v in out.items()}, "scale_arr": ddim.rescale_table()}


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------

class Trainer:
    """All state of one run; `state_dict()` / `load_state_dict()` make it resumable at any step."""

    def __init__(self, args):
        import torch
        self.args = args
        self.pkg = setup_comfy(args.comfyui)
        torch.set_num_threads(args.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.captions = all_captions()
        self.caption_index = {c: i for i, c in enumerate(self.captions)}
        self.text_sd = random_text_tower(args.seed + 1)
        self.embeddings = text_embeddings(self.pkg, self.text_sd, self.captions)
        self.vae = build_vae(args.seed + 2)
        self.unet = build_unet(self.pkg, args.seed + 3, UNET)
        self.ema = {k: v.detach().clone() for k, v in self.unet.state_dict().items()}
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=args.vae_lr, weight_decay=0.0, betas=(0.9, 0.99))
        self.unet_opt = torch.optim.AdamW(self.unet.parameters(), lr=args.unet_lr, weight_decay=0.01, betas=(0.9, 0.99))
        self.phase = "vae"
        self.step = 0                    # step within the phase
        self.rng = np.random.default_rng(args.seed)               # data generator: VAE crops (stage 1)
        self.vae_full_rng = np.random.default_rng(args.seed + 6)  # data generator: VAE whole frames (stage 2)
        self.pool_rng = np.random.default_rng(args.seed + 7)      # data generator: the UNet's clip pool
        self.vae_calibrations = 0
        self.torch_gen = torch.Generator().manual_seed(args.seed + 4)  # noise, timesteps, dropout, pool sampling
        self.pool_done = 0
        self.latent_gain = 1.0
        sched = schedule_buffers(self.pkg)
        self.alphas_cumprod = sched["alphas_cumprod"]
        self.scale_arr = sched["scale_arr"]
        self.losses: list[dict] = []     # rows not yet written to the loss log
        self.history: list[float] = []   # every loss of this process (the tests compare these)

    # ---- checkpoints ----
    def state_dict(self):
        import torch
        return {"phase": self.phase, "step": self.step, "pool_done": self.pool_done, "latent_gain": self.latent_gain,
                "vae": self.vae.state_dict(), "unet": self.unet.state_dict(), "ema": self.ema,
                "vae_opt": self.vae_opt.state_dict(), "unet_opt": self.unet_opt.state_dict(),
                "rng": self.rng.bit_generator.state, "vae_full_rng": self.vae_full_rng.bit_generator.state,
                "pool_rng": self.pool_rng.bit_generator.state, "vae_calibrations": self.vae_calibrations,
                "torch_gen": self.torch_gen.get_state(),
                "torch_rng": torch.get_rng_state(),   # dropout draws from the global generator
                "seed": self.args.seed, "smoke": self.args.smoke, "settings": self.fixed_settings()}

    FIXED = ("vae_crop_steps", "vae_batch", "vae_full_batch", "vae_crop", "kl_weight", "calibration_clips",
             "pool_clips", "pool_chunk", "unet_batch", "cfg_dropout", "ema_decay")

    def fixed_settings(self) -> dict:
        """The settings a run cannot change on resume (they shape its data or its model); --unet-steps, the
        learning rates and the timestep fractions may change (the shipped run changed them on the way)."""
        return {name: getattr(self.args, name) for name in self.FIXED}

    def load_state_dict(self, state):
        import torch
        if state["seed"] != self.args.seed or state["smoke"] != self.args.smoke:
            raise SystemExit(f"checkpoint in {self.args.cache_dir} is from seed {state['seed']} smoke {state['smoke']}; "
                             f"use another --cache-dir")
        ours = self.fixed_settings()
        changed = [f"--{k.replace('_', '-')} {ours[k]} (the checkpoint has {v})"
                   for k, v in state.get("settings", {}).items() if k in ours and ours[k] != v]
        if changed:
            raise SystemExit(f"checkpoint in {self.args.cache_dir} was made with other settings: {', '.join(changed)}; "
                             f"resume with the checkpoint's values or use another --cache-dir")
        self.phase, self.step, self.pool_done = state["phase"], state["step"], state["pool_done"]
        self.latent_gain = state["latent_gain"]
        self.vae.load_state_dict(state["vae"])
        self.unet.load_state_dict(state["unet"])
        self.ema = state["ema"]
        self.vae_opt.load_state_dict(state["vae_opt"])
        self.unet_opt.load_state_dict(state["unet_opt"])
        self.rng.bit_generator.state = state["rng"]
        for name in ("vae_full_rng", "pool_rng"):
            if name in state:
                getattr(self, name).bit_generator.state = state[name]
        self.vae_calibrations = state.get("vae_calibrations", 1 if state["phase"] != "vae" else 0)
        self.torch_gen.set_state(state["torch_gen"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])

    def checkpoint_path(self):
        return os.path.join(self.args.cache_dir, "checkpoint.pt")

    def save(self):
        import torch
        os.makedirs(self.args.cache_dir, exist_ok=True)
        tmp = self.checkpoint_path() + ".tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, self.checkpoint_path())
        self.flush_log()

    def resume(self) -> bool:
        import torch
        if not os.path.isfile(self.checkpoint_path()):
            return False
        self.load_state_dict(torch.load(self.checkpoint_path(), map_location="cpu", weights_only=False))
        if self.phase == "done" and self.step < self.args.unet_steps:
            self.phase = "unet"    # a finished run continues when --unet-steps is raised
        return True

    def flush_log(self):
        if not self.args.loss_log or not self.losses:
            return
        new = not os.path.isfile(self.args.loss_log)
        os.makedirs(os.path.dirname(os.path.abspath(self.args.loss_log)), exist_ok=True)
        with open(self.args.loss_log, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["phase", "step", "loss", "lr", "clips_seen", "wall_seconds"])
            if new:
                writer.writeheader()
            writer.writerows(self.losses)
        self.losses = []

    def log(self, loss, lr, clips):
        self.history.append(loss)
        if self.step % self.args.log_every == 0:
            self.losses.append({"phase": self.phase, "step": self.step, "loss": f"{loss:.6f}", "lr": f"{lr:.3g}",
                                "clips_seen": clips, "wall_seconds": f"{time.time() - self.started:.0f}"})

    # ---- phase 1: VAE ----
    def vae_step(self):
        """Stage 1 (steps < vae_crop_steps): random crops (cheap); stage 2: whole 64x64 frames, plus an edge term,
        so the decoder learns the borders and the mid-block attention sees the full 8x8 latent."""
        import torch
        full = self.step >= self.args.vae_crop_steps
        batch = []
        for _ in range(self.args.vae_full_batch if full else self.args.vae_batch):
            if full:
                batch.append(make_clip(self.vae_full_rng, frames=1)[0][0])
                continue
            video, _, _ = make_clip(self.rng, frames=1)
            frame = video[0]
            y, x = self.rng.integers(0, SIZE - self.args.vae_crop + 1, size=2)
            batch.append(frame[y:y + self.args.vae_crop, x:x + self.args.vae_crop])
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        moments = self.vae.quant_conv(self.vae.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=self.torch_gen)
        rec = self.vae.decoder(self.vae.post_quant_conv(z))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
        loss_rec = (rec - x).abs().mean() + (rec - x).pow(2).mean()
        loss = loss_rec + self.args.kl_weight * kl
        if full:
            edges = lambda v: (v[..., 1:, :] - v[..., :-1, :], v[..., :, 1:] - v[..., :, :-1])
            loss = loss + sum((a - b).abs().mean() for a, b in zip(edges(rec), edges(x)))
            progress = (self.step - self.args.vae_crop_steps) / max(1, self.args.vae_steps - self.args.vae_crop_steps)
            lr = 0.5 * self.args.vae_lr * min(1.0, (self.step - self.args.vae_crop_steps + 1) / 50) * \
                (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
        else:
            lr = self.args.vae_lr * min(1.0, (self.step + 1) / 100) * \
                (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, self.step / self.args.vae_crop_steps))))
        for group in self.vae_opt.param_groups:
            group["lr"] = lr
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), 1.0)
        self.vae_opt.step()
        self.step += 1
        self.log(loss_rec.item(), lr, self.step)

    def calibrate_latents(self):
        """Rescale the VAE latent exactly so `latent * 0.18215` has unit standard deviation (SD latent format)."""
        import torch
        rng = np.random.default_rng(self.args.seed + 5)
        frames = np.concatenate([make_clip(rng)[0] for _ in range(self.args.calibration_clips)])
        with torch.no_grad():
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            mean = self.vae.quant_conv(self.vae.encoder(x)).chunk(2, dim=1)[0]
            gain = float((1.0 / LATENT_SCALE) / mean.std())
            # moments = quant_conv(h): mean rows scaled by gain, logvar rows shifted by 2 log gain
            qw, qb = self.vae.quant_conv.weight, self.vae.quant_conv.bias
            qw[:4] *= gain
            qb[:4] *= gain
            qb[4:] += 2 * math.log(gain)
            # post_quant_conv(z / gain) == old post_quant_conv(z_old)
            self.vae.post_quant_conv.weight /= gain
        self.latent_gain *= gain
        self.vae_calibrations += 1

    # ---- phase 2: encode the clip pool ----
    def pool_path(self):
        return os.path.join(self.args.cache_dir, "pool.npz")

    def encode_pool_chunk(self, chunk: int):
        """Generate and encode `chunk` clips; appends to the pool file (resumable per chunk)."""
        import torch
        latents, caps = [], []
        for _ in range(chunk):
            video, caption, _ = make_clip(self.pool_rng)
            with torch.no_grad():
                x = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                mean = self.vae.quant_conv(self.vae.encoder(x)).chunk(2, dim=1)[0]
            latents.append((mean * LATENT_SCALE).half().numpy())
            caps.append(self.caption_index[caption])
        old_l, old_c = self.load_pool() if self.pool_done else (np.zeros((0, FRAMES, 4, SIZE // 8, SIZE // 8), np.float16), np.zeros(0, np.int64))
        new_l, new_c = np.concatenate([old_l, np.stack(latents)]), np.concatenate([old_c, np.asarray(caps, np.int64)])
        os.makedirs(self.args.cache_dir, exist_ok=True)
        tmp = self.pool_path() + ".tmp.npz"
        np.savez(tmp, latents=new_l, captions=new_c)
        os.replace(tmp, self.pool_path())
        self.pool_done += chunk
        self._pool = None

    def load_pool(self):
        data = np.load(self.pool_path())
        return data["latents"][: self.pool_done], data["captions"][: self.pool_done]

    # ---- phase 3: UNet ----
    def unet_step(self):
        import torch
        if getattr(self, "_pool", None) is None:
            latents, caps = self.load_pool()
            self._pool = (torch.from_numpy(latents.astype(np.float32)), torch.from_numpy(caps))
            self._reverse_caption = torch.tensor([self.caption_index[caption_reversed(c)] for c in self.captions])
        latents, caps = self._pool
        g = self.torch_gen
        b = self.args.unet_batch
        idx = torch.randint(0, latents.shape[0], (b,), generator=g)
        x0 = latents[idx].clone()                        # [b, T, 4, h, w], model space
        cap = caps[idx].clone()
        reverse = torch.rand(b, generator=g) < 0.5
        x0[reverse] = x0[reverse].flip(1)
        cap[reverse] = self._reverse_caption[cap[reverse]]
        drop = torch.rand(b, generator=g) < self.args.cfg_dropout
        cap[drop] = 0                                      # the empty prompt
        context = self.embeddings[cap]                     # [b, 77, 64]
        # timesteps: one per clip, or (25%) a per-frame ramp spanning up to one FIFO window's spread
        t_clip = torch.randint(0, 1000, (b,), generator=g)
        if self.args.high_noise_fraction > 0:           # more clips where the text decides the colour (t >= 600)
            high = torch.rand(b, generator=g) < self.args.high_noise_fraction
            t_clip = torch.where(high, torch.randint(600, 1000, (b,), generator=g), t_clip)
        ramp = torch.rand(b, generator=g) < self.args.ramp_fraction
        span = torch.randint(16, 320, (b,), generator=g)
        start = (torch.rand(b, generator=g) * (1000 - span)).long()
        frame_pos = torch.arange(FRAMES).float() / (FRAMES - 1)
        t_ramp = start[:, None] + (span[:, None].float() * frame_pos[None]).round().long()
        t = torch.where(ramp[:, None], t_ramp, t_clip[:, None].expand(b, FRAMES)).clamp(0, 999)   # [b, T]
        noise = torch.randn(x0.shape, generator=g)
        a = self.alphas_cumprod[t][..., None, None, None]
        s = self.scale_arr[t][..., None, None, None]
        xt = a.sqrt() * s * x0 + (1 - a).sqrt() * noise
        flat = lambda v: v.reshape(b * FRAMES, *v.shape[2:])
        eps = self.unet(flat(xt), flat(t).float(), context=context.repeat_interleave(FRAMES, 0),
                        transformer_options={"video_length": FRAMES}, fps=torch.full((b * FRAMES,), float(FPS)))
        loss = (eps - flat(noise)).pow(2).mean()
        progress = min(1.0, self.step / self.args.unet_steps)
        lr = self.args.unet_lr * min(1.0, (self.step + 1) / 300) * (0.15 + 0.85 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in self.unet_opt.param_groups:
            group["lr"] = lr
        self.unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.unet_opt.step()
        decay = min(self.args.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.unet.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)
        self.step += 1
        self.log(loss.item(), lr, self.step * b)

    # ---- driver ----
    def run(self, max_steps: int | None = None, max_seconds: float | None = None):
        """Advance through the phases; stops after `max_steps` steps of this process (VAE and UNet optimiser
        steps, and pool chunks of `--pool-chunk` clips) or after `max_seconds`; always saves a checkpoint."""
        self.started = time.time()
        last_save = time.time()
        done = 0
        while self.phase != "done":
            if max_steps is not None and done >= max_steps:
                break
            if max_seconds is not None and time.time() - self.started > max_seconds:
                break
            if self.phase == "vae":
                if self.step >= min(self.args.vae_crop_steps, self.args.vae_steps) and self.vae_calibrations == 0:
                    self.calibrate_latents()      # after the crop stage too (exact; keeps stage 2 at the final scale)
                    self.report(f"VAE crop stage done; latent gain {self.latent_gain:.3f}")
                    continue
                if self.step >= self.args.vae_steps:
                    self.vae.eval()
                    if self.vae_calibrations < 2 and self.args.vae_steps > self.args.vae_crop_steps:
                        self.calibrate_latents()
                    self.phase, self.step = "pool", 0
                    self.report(f"VAE done; latent gain {self.latent_gain:.3f}")
                    continue
                self.vae_step()
                done += 1
            elif self.phase == "pool":
                if self.pool_done >= self.args.pool_clips:
                    self.phase, self.step = "unet", 0
                    self.report(f"pool of {self.pool_done} clips encoded")
                    continue
                self.encode_pool_chunk(min(self.args.pool_chunk, self.args.pool_clips - self.pool_done))
                done += 1
                self.report(f"pool {self.pool_done}/{self.args.pool_clips}")
            elif self.phase == "unet":
                if self.step >= self.args.unet_steps:
                    self.phase = "done"
                    continue
                self.unet_step()
                done += 1
            if self.phase in ("vae", "unet") and self.step % self.args.print_every == 0:
                recent = self.history[-self.args.print_every:]
                self.report(f"{self.phase} step {self.step}: loss {sum(recent) / max(1, len(recent)):.5f}")
            if time.time() - last_save > self.args.checkpoint_minutes * 60:
                self.save()
                last_save = time.time()
        self.save()

    def report(self, text):
        if not self.args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # ---- export ----
    def export_path(self) -> str:
        """`--out`, else the bundled model's path for a finished run and the cache dir for an unfinished one
        (a short or interrupted run never replaces the bundled model by accident)."""
        if self.args.out:
            return self.args.out
        return BUNDLED_MODEL if self.phase == "done" else os.path.join(self.args.cache_dir, "unfinished.safetensors")

    def export(self, path: str):
        """The VideoCrafter2-layout safetensors: fp16 weights (EMA UNet), float32 schedule buffers."""
        import torch
        import safetensors.torch
        sd = {}
        for k, v in self.ema.items():
            sd["model.diffusion_model." + k] = v
        for k, v in self.vae.state_dict().items():
            sd["first_stage_model." + k] = v
        for k, v in self.text_sd.items():
            sd["cond_stage_model.model." + k] = v
        sd = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
        sd.update({k: v.contiguous() for k, v in schedule_buffers(self.pkg).items()})
        meta = {"format": "VideoCrafter2 (model.ckpt state_dict layout)", "license": "GPL-3.0",
                "trained_by": "tools/train_tiny_model.py", "seed": str(self.args.seed), "phase": self.phase,
                "unet_steps": str(self.step if self.phase in ("unet", "done") else 0),
                "unet_config": json.dumps(UNET), "vae_ddconfig": json.dumps(VAE_DDCONFIG),
                "text": json.dumps(TEXT), "fps": str(FPS), "frames": str(FRAMES), "resolution": f"{SIZE}x{SIZE}"}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        safetensors.torch.save_file(sd, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return os.path.getsize(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", default=os.environ.get("FIFO_COMFYUI_ROOT") or os.environ.get("COMFYUI_PATH") or DEFAULT_COMFYUI,
                   help="the ComfyUI root (the folder with main.py and comfy/)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="checkpoints, the encoded clip pool, the loss log")
    p.add_argument("--out", default=None, help="where to export (default: the bundled model for a finished run, "
                                               "<cache-dir>/unfinished.safetensors otherwise)")
    p.add_argument("--loss-log", default=None, help="CSV loss log (default <cache-dir>/loss.csv; '' for none)")
    p.add_argument("--seed", type=int, default=20250)
    p.add_argument("--threads", type=number(int, 1), default=1, help="torch threads (the same seed gives the same run "
                                                              "for the same thread count)")
    p.add_argument("--vae-steps", type=number(int, 0), default=5000, help="VAE steps in all (crop stage + whole-frame stage)")
    p.add_argument("--vae-crop-steps", type=number(int, 0), default=2500, help="VAE steps on random crops before whole frames")
    p.add_argument("--vae-full-batch", type=number(int, 1), default=4)
    p.add_argument("--vae-batch", type=number(int, 1), default=8)
    p.add_argument("--vae-crop", type=number(int, 8), default=32, help="crop size in pixels, a multiple of 8 up to 64")
    p.add_argument("--vae-lr", type=number(float, 0, above=True), default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--calibration-clips", type=number(int, 1), default=16, help="clips measuring the latent scale")
    p.add_argument("--pool-clips", type=number(int, 1), default=2000)
    p.add_argument("--pool-chunk", type=number(int, 1), default=100)
    p.add_argument("--unet-steps", type=number(int, 0), default=6000)
    p.add_argument("--unet-batch", type=number(int, 1), default=2)
    p.add_argument("--unet-lr", type=number(float, 0, above=True), default=5e-4)
    p.add_argument("--ema-decay", type=number(float, 0, 1), default=0.999)
    p.add_argument("--cfg-dropout", type=number(float, 0, 1), default=0.15)
    p.add_argument("--ramp-fraction", type=number(float, 0, 1), default=0.25)
    p.add_argument("--high-noise-fraction", type=number(float, 0, 1), default=0.0,
                   help="fraction of the one-timestep clips whose timestep is drawn from 600..999 instead of 0..999")
    p.add_argument("--checkpoint-minutes", type=number(float, 0, above=True), default=4.0)
    p.add_argument("--log-every", type=number(int, 1), default=10)
    p.add_argument("--print-every", type=number(int, 1), default=100)
    p.add_argument("--max-seconds", type=number(float, 0, above=True), default=None, help="stop (after a checkpoint) after this long")
    p.add_argument("--export-only", action="store_true", help="export the latest checkpoint and exit")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a test run: never exported (checkpoints still go to "
                                                        "--cache-dir, marked so that a real run refuses them)")
    p.add_argument("--steps", type=number(int, 0), default=None,
                   help="steps to run in this process (VAE and UNet optimiser steps, pool chunks)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.vae_crop % 8 or args.vae_crop > SIZE:
        p.error(f"argument --vae-crop: expected a multiple of 8 up to {SIZE} pixels, got {args.vae_crop}")
    if not os.path.isdir(os.path.join(args.comfyui, "comfy")):
        p.error(f"argument --comfyui: {args.comfyui!r} is not a ComfyUI root (it has no comfy/ folder)")
    if args.loss_log is None:
        args.loss_log = os.path.join(args.cache_dir, "loss.csv")
    return args


def smoke_losses(seed: int, vae_steps: int = 2, unet_steps: int = 2, comfyui: str | None = None,
                 extra: tuple[str, ...] = ()) -> list[float]:
    """Run the three phases at toy sizes (in a temporary cache dir) and return every loss: the determinism test."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--smoke", "--quiet", "--seed", str(seed), "--cache-dir", tmp, "--loss-log", "",
                "--vae-steps", str(vae_steps), "--vae-crop-steps", "1", "--vae-full-batch", "1", "--vae-batch", "2", "--vae-crop", "16", "--calibration-clips", "1", "--pool-clips", "4",
                "--pool-chunk", "2", "--unet-steps", str(unet_steps), "--unet-batch", "2"]
        if comfyui:
            argv += ["--comfyui", comfyui]
        trainer = Trainer(parse_args(argv + list(extra)))
        trainer.run()
        return list(trainer.history)


def main(argv=None):
    args = parse_args(argv)
    trainer = Trainer(args)
    resumed = trainer.resume()
    if args.export_only and not resumed:
        raise SystemExit(f"--export-only: no checkpoint in {args.cache_dir} (--cache-dir) to export")
    trainer.report(f"{'resumed' if resumed else 'new run'}: phase {trainer.phase}, step {trainer.step}, "
                   f"UNet {sum(p.numel() for p in trainer.unet.parameters()) / 1e6:.2f} M params, "
                   f"VAE {sum(p.numel() for p in trainer.vae.parameters()) / 1e6:.2f} M params")
    if not args.export_only:
        trainer.run(max_steps=args.steps, max_seconds=args.max_seconds)
    if not args.smoke and not args.no_export:
        out = trainer.export_path()
        size = trainer.export(out)
        trainer.report(f"exported {out} ({size / 1e6:.1f} MB) from phase {trainer.phase} step {trainer.step}")


if __name__ == "__main__":
    main()
