"""FIFO+ consistency on the conditioning side: latent seeding for the FIFO sampler, the image tokens of
VideoCrafter1 image-to-video conditioning and a still base clip from one image (the weighted Q-cache, the other
FIFO+ trick, patches attention: `bridge/qcache.py`). docs/consistency.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

import comfy.utils

from ..videocrafter.image_attention import TEXT_TOKENS, context_with_image_tokens
from .fifo_conditioning import text_contexts, with_contexts

log = logging.getLogger("fifo_infinity")


@dataclass(frozen=True)
class LatentSeeding:
    """FIFO+ latent seeding settings (the FIFO_LATENT_SEEDING value): the VAE that decodes the seed latent, the
    VideoCrafter1 image encoder that embeds it, and how often to re-seed (output frames; 0 = once).

    Raises ValueError naming image_encoder or reseed_every when the settings cannot work. The default and range
    of reseed_every are the FIFO Latent Seeding node's.
    """
    vae: object
    image_encoder: object
    reseed_every: int = field(default=0, metadata={"min": 0, "max": 1000000})

    def __post_init__(self):
        if self.image_encoder is None:
            raise ValueError("image_encoder: this checkpoint has no image encoder (text-to-video); latent seeding needs "
                             "a VideoCrafter1 image-to-video checkpoint (Image2Video_512 model.ckpt)")
        if self.reseed_every < 0:
            raise ValueError(f"reseed_every = {self.reseed_every}: use 0 (seed once) or a number of frames")


def append_image_tokens(conditioning, tokens: torch.Tensor, text_tokens: int = TEXT_TOKENS):
    """CONDITIONING whose every entry's context is its first `text_tokens` text tokens followed by `tokens`
    `[1, n, C]` (VideoCrafter1 image-to-video: 77 + 16 tokens; official `lvdm/models/ddpm3d.py`,
    `get_image_embeds` and the concatenation in `image_guided_synthesis`)."""
    out = []
    for context, options in conditioning:
        if context.shape[1] > text_tokens:
            log.warning("Image to Video Conditioning: the context has %d tokens; VideoCrafter1 I2V reads the first %d "
                        "as text (a longer prompt is cut), the rest is replaced by the image tokens",
                        context.shape[1], text_tokens)
        out.append([context_with_image_tokens(context, tokens, text_tokens), options.copy()])
    return out


def still_clip(image: torch.Tensor, vae, frames: int, width: int, height: int) -> torch.Tensor:
    """A still base clip for FIFO: the first image of IMAGE `[B, H, W, C]`, resized with a centre crop to
    width x height pixels, VAE-encoded and repeated: LATENT samples `[frames, 4, height/8, width/8]`."""
    pixels = image[:1, :, :, :3].movedim(-1, 1)
    pixels = comfy.utils.common_upscale(pixels, width, height, "bilinear", "center").movedim(1, -1)
    return vae.encode(pixels).repeat(frames, 1, 1, 1)


class SeedConds:
    """Latent seeding on the guider's processed conds (FIFO+ `t2v_seed`; docs/consistency.md, "Latent seeding").

    `seed(latent)` (called by the FIFO core with a model-space latent `[1, C, h, w]`) decodes it with the VAE,
    embeds the image into 16 tokens with the image encoder and from then on the positive context is its 77
    text tokens followed by those tokens (a re-seed replaces them: the context never grows); the negative
    context gets the mid-grey image's tokens, as the official unconditional branch (77 + 16 tokens). Before the
    first seed (the base clip) both stay text-only.

    Raises ValueError naming latent_seeding when the model has no image cross-attention or a conditioning
    already carries image tokens.
    """

    def __init__(self, seeding: LatentSeeding, guider, inner_model):
        if not getattr(inner_model.diffusion_model, "image_cross_attention", False):
            raise ValueError("latent_seeding: this MODEL has no image cross-attention (to_k_ip / to_v_ip), so it "
                             "cannot condition on the seed frame; use a VideoCrafter1 image-to-video checkpoint "
                             "(Image2Video_512 model.ckpt), as FIFO+ does")
        for name in ("positive", "negative"):
            for context in text_contexts(guider.conds.get(name, [])):
                if context.shape[1] > TEXT_TOKENS:
                    raise ValueError(f"latent_seeding: the {name} conditioning already has {context.shape[1]} tokens "
                                     f"(text + image); latent seeding adds its own image tokens, so connect the plain "
                                     f"text conditioning (without Image to Video Conditioning), or drop the seeding")
        self.seeding = seeding
        self.guider = guider
        self.inner_model = inner_model
        self.negative = guider.conds.get("negative")
        self.tokens = None
        self.cache = {}

    @staticmethod
    def _with_tokens(entries: list, tokens: torch.Tensor) -> list:
        return with_contexts(entries, [context_with_image_tokens(c, tokens) for c in text_contexts(entries)])

    def seed(self, latent: torch.Tensor) -> None:
        images = self.seeding.vae.decode(self.inner_model.process_latent_out(latent))
        images = images.reshape(-1, *images.shape[-3:])[:1, :, :, :3]
        self.tokens = self.seeding.image_encoder.encode(images)
        self.cache = {}
        if self.negative is not None:
            self.guider.conds["negative"] = self._with_tokens(self.negative,
                                                              self.seeding.image_encoder.unconditional_tokens())

    def positive(self, entries: list) -> list:
        if self.tokens is None:
            return entries
        key = id(entries)
        if key not in self.cache:
            self.cache = {key: (entries, self._with_tokens(entries, self.tokens))}
        return self.cache[key][1]
