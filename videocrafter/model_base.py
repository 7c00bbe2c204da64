"""VideoCrafter2 as a ComfyUI model: the model config, the BaseModel subclass and its model sampling.

Model sampling (docs/videocrafter2.md, "The rescaled schedule"): VideoCrafter2 was trained with a rescaled
forward process `x_t = sqrt(a_t) s_t x0 + sqrt(1 - a_t) eps`, `s_t = scale_arr[t]` (1.0 at t=0 falling linearly to 0.7 at
t=400, then 0.7; official `lvdm/models/ddpm3d.py`, `use_scale`, `scale_b=0.7`). In `X = x_t / (s_t sqrt(a_t))`
this is a variance-exploding process with `sigma(t) = sqrt((1 - a_t) / a_t) / s_t`, so ComfyUI's samplers
work unchanged on it: the UNet input is `x_t = s_t sqrt(a_t) X` and `denoised = X - sigma eps`.
Euler on the DDIM grid then reproduces VideoCrafter2's own DDIM sampler (eta 0). With the rescale switched
off, `s_t = 1` and this is ComfyUI's usual EPS sampling (what the official FIFO step uses).
"""

from __future__ import annotations

import torch

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_sampling
import comfy.supported_models_base

from ..samplers.ddim import LINEAR_END, LINEAR_START, TRAIN_TIMESTEPS, rescale_table
from ..samplers.ddim import alphas_cumprod as alphas_cumprod_float32
from .unet import DEFAULT_FPS, UNet3D

# The schedule (its constants, `alphas_cumprod_float32()` `[1000]` and `rescale_table()` `[1400]`) is the pure
# DDIM core's (samplers/ddim.py): one definition for the model sampling, the FIFO core and the training script.


class VideoCrafterModelSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """EPS model sampling on VideoCrafter2's schedule, with (`rescale=True`) or without its x0 rescale.

    sigmas `[1000]`: `sqrt((1 - a_t) / a_t) / s_t`; `scales` `[1000]`: `s_t` (all 1 without rescale).
    """

    def __init__(self, model_config=None, rescale: bool = True):
        super().__init__(model_config)
        self.rescale = rescale
        alphas = alphas_cumprod_float32().double()
        scales = rescale_table()[:TRAIN_TIMESTEPS].double() if rescale else torch.ones(TRAIN_TIMESTEPS, dtype=torch.float64)
        self.register_buffer("alphas_cumprod", alphas.float())
        self.register_buffer("scales", scales.float())
        self.set_sigmas((((1 - alphas) / alphas) ** 0.5 / scales).float())

    def scale_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """`s_t` at the timestep nearest to each sigma (same shape as sigma)."""
        t = self.timestep(sigma)
        return self.scales.to(sigma.device)[t.long()].to(sigma.dtype)

    def calculate_input(self, sigma, noise):
        s = comfy.model_sampling.reshape_sigma(self.scale_at(sigma), noise.ndim)
        sigma = comfy.model_sampling.reshape_sigma(sigma, noise.ndim)
        return noise * s / (1.0 + (s * sigma) ** 2) ** 0.5

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        if max_denoise:   # X_T = x_T / (s_T sqrt(a_T)) with x_T ~ N(0, I)
            s = comfy.model_sampling.reshape_sigma(self.scale_at(sigma), noise.ndim)
            sigma = comfy.model_sampling.reshape_sigma(sigma, noise.ndim)
            return noise * (1.0 + (s * sigma) ** 2) ** 0.5 / s + latent_image
        return super().noise_scaling(sigma, noise, latent_image, max_denoise=False)


class VideoCrafterConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config for VideoCrafter2 (and VideoCrafter1, same UNet family)."""
    unet_extra_config = {}
    latent_format = comfy.latent_formats.SD15
    sampling_settings = {"beta_schedule": "linear", "linear_start": LINEAR_START, "linear_end": LINEAR_END,
                         "timesteps": TRAIN_TIMESTEPS}
    memory_usage_factor = 2.0
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]


class VideoCrafterModel(comfy.model_base.BaseModel):
    """BaseModel around `UNet3D`: EPS, frames as batch `[T, 4, h, w]`, fps as a conditioning (default 8)."""

    def __init__(self, model_config, device=None, rescale: bool = True):
        super().__init__(model_config, comfy.model_base.ModelType.EPS, device=device, unet_model=UNet3D)
        self.model_sampling = VideoCrafterModelSampling(model_config, rescale=rescale)

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        fps = kwargs.get("fps", DEFAULT_FPS)
        out["fps"] = comfy.conds.CONDRegular(torch.tensor([float(fps)]))
        return out
