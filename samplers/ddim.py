"""DDIM on VideoCrafter2's schedule, exactly as the official code computes it (pure torch, no ComfyUI).

Sources: jjihwan/FIFO-Diffusion_public (b87ba5d) `lvdm/models/ddpm3d.py` (`register_schedule`, `use_scale`),
`lvdm/models/utils_diffusion.py` (`make_ddim_timesteps`, `make_ddim_sampling_parameters`) and
`lvdm/models/samplers/ddim.py` (`p_sample_ddim`, `ddim_step`); docs/fifo.md, "The DDIM grid" and "The base
clip".

Conventions
- Latents are in model space (VAE latent x 0.18215) and frames are the batch: `[F, C, h, w]`.
- `timesteps` are DDPM timesteps 0..999 (integers); a DDIM *index* k in 0..S-1 selects the level
  `tau_k` of the S-step grid (k = 0 is the cleanest level, t = 0; k = S-1 is t = 999).
- Arithmetic follows the official dtypes: alphas are float32, sigma is evaluated in float64 then used
  as float32, and every step is float32 (docs/fifo.md, "Pitfalls reproduced or fixed", items 1-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

TRAIN_TIMESTEPS = 1000
LINEAR_START, LINEAR_END = 0.00085, 0.012
SCALE_A, SCALE_B, SCALE_MID_STEP = 1.0, 0.7, 400

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""`eps(x [F, C, h, w], timesteps [F] int64) -> predicted noise [F, C, h, w]` (CFG already applied)."""


def linear_betas() -> torch.Tensor:
    """`[1000]` float64 betas `linspace(sqrt(0.00085), sqrt(0.012))**2` (official `DDPM.register_schedule`,
    beta_schedule "linear" = sqrt-linear, computed in float64 before the buffers are stored)."""
    return torch.linspace(LINEAR_START ** 0.5, LINEAR_END ** 0.5, TRAIN_TIMESTEPS, dtype=torch.float64) ** 2


def alphas_cumprod() -> torch.Tensor:
    """`[1000]` float32 cumulative alphas: cumprod of `1 - linear_betas()` in float64, stored as float32
    (official `DDPM.register_schedule`)."""
    return torch.cumprod(1.0 - linear_betas(), dim=0).to(torch.float32)


def rescale_table() -> torch.Tensor:
    """`[1400]` float32 `scale_arr` of VideoCrafter2 (`use_scale`, `scale_b=0.7`, `fix_scale_bug=False`):
    `linspace(1, 0.7, 400)` followed by 1000 x 0.7. Only VideoCrafter2's own sampler uses it, not the official FIFO
    step (docs/videocrafter2.md, "The rescaled schedule")."""
    head = torch.linspace(SCALE_A, SCALE_B, SCALE_MID_STEP, dtype=torch.float64)
    return torch.cat([head, torch.full((TRAIN_TIMESTEPS,), SCALE_B, dtype=torch.float64)]).to(torch.float32)


def ddim_timesteps(steps: int) -> torch.Tensor:
    """`[S]` int64 DDIM grid `round(linspace(0, 999, S))` (official `ddim_discretize="uniform"` as FIFO calls it;
    it includes both 0 and 999). Rounding is half-to-even, as numpy's."""
    if steps < 1:
        raise ValueError(f"DDIM steps = {steps}: need at least 1")
    if steps > TRAIN_TIMESTEPS:
        raise ValueError(f"DDIM steps = {steps}: at most {TRAIN_TIMESTEPS} (one per training timestep)")
    return torch.linspace(0, TRAIN_TIMESTEPS - 1, steps, dtype=torch.float64).round().to(torch.int64)


@dataclass(frozen=True)
class DDIMSchedule:
    """Per-index DDIM coefficients, all `[S]`, index k = 0 (t = 0) .. S-1 (t = 999).

    timesteps: int64 `tau_k`; alphas: float32 `abar(tau_k)`; alphas_prev: float32 `abar(tau_{k-1})` with
    `abar(tau_0)` (not 1) for k = 0; sigmas: float32 `eta * sqrt((1-a_prev)/(1-a) * (1 - a/a_prev))` (0 at k = 0);
    sqrt_one_minus_alphas: float32; scales / scales_prev: float32 `scale_arr[tau_k]` / `scale_arr[tau_{k-1}]`
    (`scale_arr[0]` for k = 0), used only by the rescaled (VideoCrafter2 base-clip) update.
    """
    timesteps: torch.Tensor
    alphas: torch.Tensor
    alphas_prev: torch.Tensor
    sigmas: torch.Tensor
    sqrt_one_minus_alphas: torch.Tensor
    scales: torch.Tensor
    scales_prev: torch.Tensor
    eta: float

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    @classmethod
    def build(cls, steps: int | None = None, eta: float = 0.0, timesteps: torch.Tensor | None = None,
              abar: torch.Tensor | None = None, scale_arr: torch.Tensor | None = None) -> "DDIMSchedule":
        """Coefficients for the `steps`-level grid `ddim_timesteps(steps)`, or for explicit strictly increasing
        `timesteps` (any grid: the FIFO SAMPLER derives it from ComfyUI sigmas). `abar` `[1000]` and
        `scale_arr` `[>=1000]` default to VideoCrafter2's."""
        if eta < 0:
            raise ValueError(f"eta = {eta}: must be >= 0 (0 = deterministic DDIM, 1 = the official FIFO default)")
        if timesteps is None:
            if steps is None:
                raise ValueError("give either steps or timesteps")
            timesteps = ddim_timesteps(steps)
        timesteps = torch.as_tensor(timesteps, dtype=torch.int64).flatten().cpu()
        if timesteps.numel() < 1:
            raise ValueError("the DDIM grid is empty")
        if timesteps.numel() > 1 and not bool((timesteps[1:] > timesteps[:-1]).all()):
            raise ValueError(f"DDIM timesteps must be strictly increasing, got {timesteps.tolist()}")
        if int(timesteps[0]) < 0 or int(timesteps[-1]) >= TRAIN_TIMESTEPS:
            raise ValueError(f"DDIM timesteps must lie in 0..{TRAIN_TIMESTEPS - 1}, got {timesteps[0]}..{timesteps[-1]}")
        abar = alphas_cumprod() if abar is None else abar.to(torch.float32).cpu()
        scale_arr = rescale_table() if scale_arr is None else scale_arr.to(torch.float32).cpu()

        alphas = abar[timesteps]                                          # float32
        alphas_prev = torch.cat([abar[:1], abar[timesteps[:-1]]])         # float32 values (official: float64 holding them)
        # official: (1 - a_prev)[f64] / (1 - a)[f32 -> f64] * (1 - a[f64] / a_prev[f64]), then used as float32
        a64, ap64 = alphas.to(torch.float64), alphas_prev.to(torch.float64)
        sigmas = eta * torch.sqrt((1.0 - ap64) / (1.0 - alphas).to(torch.float64) * (1.0 - a64 / ap64))
        scales = scale_arr[timesteps]
        scales_prev = torch.cat([scale_arr[:1], scale_arr[timesteps[:-1]]])
        return cls(timesteps=timesteps, alphas=alphas, alphas_prev=alphas_prev, sigmas=sigmas.to(torch.float32),
                   sqrt_one_minus_alphas=torch.sqrt(1.0 - alphas), scales=scales, scales_prev=scales_prev,
                   eta=float(eta))


def _per_frame(values: torch.Tensor, indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`values[indices]` shaped `[F, 1, 1, 1]` on `like`'s device (float32)."""
    return values[indices.cpu()].to(device=like.device, dtype=torch.float32).view(-1, *([1] * (like.ndim - 1)))


def ddim_step(x: torch.Tensor, eps: torch.Tensor, indices: torch.Tensor, schedule: DDIMSchedule,
              noise: torch.Tensor | None = None, rescale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update of every frame at its own level (FIFO's diagonal step, official `ddim_step`).

    x, eps: `[F, C, h, w]` latents and predicted noise; indices: `[F]` DDIM indices (frame i goes from level
    `tau_{indices[i]}` to `tau_{indices[i]-1}`, or stays at `tau_0` for index 0); noise: `[F, C, h, w]` N(0, I)
    (required when any selected sigma is > 0). With `rescale` (VideoCrafter2's own sampler, `p_sample_ddim`
    with `use_scale`), x0 is divided by `scale_k` and re-multiplied by `scale_prev_k`.

    Returns `(x_prev, pred_x0)`, both `[F, C, h, w]` float32:
    `x0 = (x - sqrt(1 - a) eps) / sqrt(a)`, `x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma noise`.
    """
    if x.shape != eps.shape:
        raise ValueError(f"ddim_step: x {tuple(x.shape)} and eps {tuple(eps.shape)} differ")
    indices = torch.as_tensor(indices, dtype=torch.int64)
    if indices.shape != (x.shape[0],):
        raise ValueError(f"ddim_step: {tuple(indices.shape)} indices for {x.shape[0]} frames")
    x, eps = x.to(torch.float32), eps.to(torch.float32)
    a_t = _per_frame(schedule.alphas, indices, x)
    a_prev = _per_frame(schedule.alphas_prev, indices, x)
    sigma = _per_frame(schedule.sigmas, indices, x)
    sqrt_one_minus_a = _per_frame(schedule.sqrt_one_minus_alphas, indices, x)

    pred_x0 = (x - sqrt_one_minus_a * eps) / a_t.sqrt()
    direction = (1.0 - a_prev - sigma ** 2).sqrt() * eps
    if rescale:
        pred_x0 = pred_x0 / _per_frame(schedule.scales, indices, x)
        x_prev = a_prev.sqrt() * _per_frame(schedule.scales_prev, indices, x) * pred_x0 + direction
    else:
        x_prev = a_prev.sqrt() * pred_x0 + direction
    if bool((schedule.sigmas[indices.cpu()] > 0).any()):
        if noise is None:
            raise ValueError("ddim_step: eta > 0 needs step noise")
        x_prev = x_prev + sigma * noise.to(device=x.device, dtype=torch.float32)
    return x_prev, pred_x0


@torch.no_grad()   # a grad-enabled model would otherwise keep the graph of all S steps
def sample_base_clip(eps_model: EpsModel, x_T: torch.Tensor, schedule: DDIMSchedule,
                     step_noise: Callable[[int, tuple], torch.Tensor] | None = None, rescale: bool = True,
                     callback: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """The base clip: VideoCrafter2's own S-step DDIM over one clip of f frames, all frames at one timestep.

    Official `base_ddim_sampling` -> `DDIMSampler.ddim_sampling` / `p_sample_ddim` with `use_scale`
    (docs/fifo.md, "The base clip"): step i = 0..S-1 uses index k = S-1-i, t = tau_k.

    eps_model: `eps(x [f, C, h, w], timesteps [f]) -> [f, C, h, w]` (CFG applied by the caller).
    x_T: `[f, C, h, w]` initial N(0, I) noise. step_noise: `step_noise(i, shape) -> [f, C, h, w]` N(0, I) for
    step i (only called when sigma_k > 0). rescale: apply `scale_arr` (VideoCrafter2: True).
    callback: `callback(i, S, pred_x0)` after each step. Returns the clip `[f, C, h, w]` float32 (model space;
    the last step lands on `a_0`, so it is `sqrt(a_0) x0 + sqrt(1 - a_0) eps`, not exactly x0).
    """
    x = x_T.to(torch.float32)
    frames = x.shape[0]
    steps = schedule.steps
    for i in range(steps):
        k = steps - 1 - i
        indices = torch.full((frames,), k, dtype=torch.int64)
        t = schedule.timesteps[indices].to(x.device)
        eps = eps_model(x, t)
        noise = step_noise(i, tuple(x.shape)) if float(schedule.sigmas[k]) > 0 else None
        x, pred_x0 = ddim_step(x, eps, indices, schedule, noise=noise, rescale=rescale)
        if callback is not None:
            callback(i, steps, pred_x0)
    return x
