"""VideoCrafter1 image-to-video image encoder: OpenCLIP ViT visual tower + the 16-query Resampler.

Official code (AILab-CVC/VideoCrafter, VideoCrafter1: `lvdm/modules/encoders/condition.py`
`FrozenOpenCLIPImageEmbedderV2` and `lvdm/modules/encoders/resampler.py` `Resampler`; docs/videocrafter2.md,
"Image-to-video (VideoCrafter1)"), with checkpoint keys
`embedder.model.visual.*` and `image_proj_model.*`:

1. preprocessing: the image in [-1, 1] is resized to 224x224 (bicubic, align_corners=True, with kornia's
   Gaussian antialiasing when shrinking; the aspect ratio is not kept), mapped to [0, 1] and normalised with
   CLIP's mean/std;
2. the visual tower: patch conv, class token + position embedding, `ln_pre`, the transformer; **all** tokens
   of the last block, before `ln_post` and `proj` (`[B, 257, 1280]` for ViT-H-14). This is ComfyUI's own
   `CLIPVision` (comfy/clip_model.py: its first output is the last block without the post layer norm), fed
   with the converted OpenCLIP keys;
3. the Resampler (perceiver): 16 learned latents attend to `proj_in(tokens)` and themselves, `depth` times
   (attention + feed-forward, residuals), then `proj_out` and a LayerNorm: `[B, 16, 1024]`.

The unconditional image is the official `zeros(1, 3, 224, 224)` in [-1, 1], i.e. mid-grey.

Heads are not stored in the weights: the visual tower defaults to ViT-H-14's 16 heads at width 1280 (else
width // 64), the Resampler to 64-wide heads (VideoCrafter1: 12 x 64); tiny test models pass theirs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import comfy.clip_model
import comfy.clip_vision
import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
from comfy.ldm.modules.attention import optimized_attention

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --- preprocessing -------------------------------------------------------------------------------------

def _gaussian_kernel(size: int, sigma: float, dtype, device) -> torch.Tensor:
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def resize_like_kornia(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`kornia.geometry.resize(x, size, 'bicubic', align_corners=True, antialias=True)` on `[B, C, H, W]`.

    When shrinking, a separable Gaussian blur (reflect padding) with sigma `(factor - 1) / 2` and an odd
    kernel of at least 3 taps (`int(4 sigma)`) runs first, as kornia does; enlarging is plain bicubic.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    factors = (h / size[0], w / size[1])
    if max(factors) > 1:
        sigmas = [max((f - 1.0) / 2.0, 0.001) for f in factors]
        sizes = [int(max(4.0 * s, 3)) for s in sigmas]
        sizes = [k if k % 2 else k + 1 for k in sizes]
        sizes = [1 if dim == 1 else k for dim, k in zip((h, w), sizes)]
        channels = x.shape[1]
        for axis, (k, s) in enumerate(zip(sizes, sigmas)):
            if k == 1:
                continue
            kernel = _gaussian_kernel(k, s, x.dtype, x.device)
            shape = (channels, 1, k, 1) if axis == 0 else (channels, 1, 1, k)
            pad = (0, 0, k // 2, k // 2) if axis == 0 else (k // 2, k // 2, 0, 0)
            x = F.conv2d(F.pad(x, pad, mode="reflect"), kernel.reshape(1, 1, *shape[2:]).expand(shape), groups=channels)
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=True)


def preprocess(x: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """Official `FrozenOpenCLIPImageEmbedderV2.preprocess`: `[B, 3, H, W]` in [-1, 1] -> CLIP input."""
    x = resize_like_kornia(x, (image_size, image_size))
    x = (x + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


def comfy_image_to_official(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE `[B, H, W, C]` in [0, 1] -> the official `[B, 3, H, W]` in [-1, 1] (alpha dropped)."""
    return image[..., :3].movedim(-1, 1) * 2.0 - 1.0


def unconditional_image(image_size: int = 224, dtype=torch.float32, device=None) -> torch.Tensor:
    """The official unconditional image: `zeros(1, 3, 224, 224)` in [-1, 1] (mid-grey)."""
    return torch.zeros(1, 3, image_size, image_size, dtype=dtype, device=device)


# --- the Resampler ---------------------------------------------------------------------------------------

class PerceiverAttention(nn.Module):
    """Latents attend to (image tokens, latents); keys `norm1`, `norm2`, `to_q`, `to_kv`, `to_out` (no biases)."""

    def __init__(self, dim, dim_head, heads, dtype=None, device=None, operations=None):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm2 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.to_q = operations.Linear(dim, inner, bias=False, dtype=dtype, device=device)
        self.to_kv = operations.Linear(dim, inner * 2, bias=False, dtype=dtype, device=device)
        self.to_out = operations.Linear(inner, dim, bias=False, dtype=dtype, device=device)

    def forward(self, x, latents, transformer_options={}):
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        return self.to_out(optimized_attention(q, k, v, self.heads, transformer_options=transformer_options))


class Resampler(nn.Module):
    """IP-Adapter-style perceiver resampler as VideoCrafter1 uses it (`image_proj_model.*`).

    `[B, N, embedding_dim]` image tokens -> `[B, num_queries, output_dim]`.
    Feed-forward: LayerNorm, Linear (no bias) to `ff_mult * dim`, GELU, Linear (no bias) back (keys .0 .1 .3).
    """

    def __init__(self, dim=1024, depth=4, dim_head=64, heads=12, num_queries=16, embedding_dim=1280, output_dim=1024,
                 ff_mult=4, dtype=None, device=None, operations=comfy.ops.manual_cast):
        super().__init__()
        self.latents = nn.Parameter(torch.empty(1, num_queries, dim, dtype=dtype, device=device))
        self.proj_in = operations.Linear(embedding_dim, dim, dtype=dtype, device=device)
        self.proj_out = operations.Linear(dim, output_dim, dtype=dtype, device=device)
        self.norm_out = operations.LayerNorm(output_dim, dtype=dtype, device=device)
        inner = int(dim * ff_mult)
        self.layers = nn.ModuleList([
            nn.ModuleList([
                PerceiverAttention(dim, dim_head, heads, dtype=dtype, device=device, operations=operations),
                nn.Sequential(operations.LayerNorm(dim, dtype=dtype, device=device),
                              operations.Linear(dim, inner, bias=False, dtype=dtype, device=device),
                              nn.GELU(),
                              operations.Linear(inner, dim, bias=False, dtype=dtype, device=device)),
            ]) for _ in range(depth)])

    def forward(self, x, transformer_options={}):
        """`transformer_options` reach every attention call (the host's attention override among them)."""
        latents = comfy.ops.cast_to_input(self.latents, x).expand(x.shape[0], -1, -1)
        x = self.proj_in(x)
        for attention, feed_forward in self.layers:
            latents = attention(x, latents, transformer_options) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))


# --- config inference ------------------------------------------------------------------------------------

def infer_vision_config(visual: dict, heads: int | None = None) -> dict:
    """ComfyUI CLIPVision config from the OpenCLIP visual state dict (`visual.*` prefix removed)."""
    width, _, patch, _ = visual["conv1.weight"].shape
    layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    positions = int(visual["positional_embedding"].shape[0])
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise ValueError(f"visual tower: {positions} position embeddings are not a class token plus a square grid")
    if heads is None:
        heads = 16 if width == 1280 else max(1, width // 64)     # ViT-H-14: head width 80; open_clip default 64
    return {"hidden_size": int(width), "num_hidden_layers": layers, "num_attention_heads": int(heads),
            "intermediate_size": int(visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]), "hidden_act": "gelu",
            "model_type": "clip_vision_model", "num_channels": 3, "patch_size": int(patch), "image_size": int(grid * patch),
            "layer_norm_eps": 1e-5}


def infer_resampler_config(projection: dict, heads: int | None = None) -> dict:
    """Resampler constructor arguments from `image_proj_model.*` (prefix removed)."""
    _, num_queries, dim = projection["latents"].shape
    inner = int(projection["layers.0.0.to_q.weight"].shape[0])
    if heads is None:
        heads = inner // 64 if inner % 64 == 0 else 1
    if inner % heads:
        raise ValueError(f"Resampler: attention width {inner} is not divisible by {heads} heads")
    return {"dim": int(dim), "depth": len({k.split(".")[1] for k in projection if k.startswith("layers.")}),
            "dim_head": inner // heads, "heads": int(heads), "num_queries": int(num_queries),
            "embedding_dim": int(projection["proj_in.weight"].shape[1]),
            "output_dim": int(projection["proj_out.weight"].shape[0]),
            "ff_mult": projection["layers.0.1.1.weight"].shape[0] / dim}


# --- the encoder ---------------------------------------------------------------------------------------

class ImageEncoderModule(nn.Module):
    """The visual tower (ComfyUI's CLIPVisionModelProjection, no projection) and the Resampler."""

    def __init__(self, vision_config: dict, resampler_config: dict, dtype=None, device=None, operations=comfy.ops.manual_cast):
        super().__init__()
        self.visual = comfy.clip_model.CLIPVisionModelProjection(vision_config, dtype, device, operations)
        self.resampler = Resampler(**resampler_config, dtype=dtype, device=device, operations=operations)
        self.image_size = vision_config["image_size"]

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP-normalised `[B, 3, S, S]` -> all tokens of the last block before `ln_post` `[B, N, width]`."""
        return self.visual.vision_model(pixels)[0]

    def forward(self, x: torch.Tensor, transformer_options={}) -> torch.Tensor:
        """Official `get_image_embeds`: `[B, 3, H, W]` in [-1, 1] -> `[B, num_queries, output_dim]`."""
        return self.resampler(self.embed(preprocess(x, self.image_size)), transformer_options)


class VideoCrafterImageEncoder:
    """The image encoder of a VideoCrafter1 I2V checkpoint, managed by ComfyUI (its own ModelPatcher).

    `encode(image)`: ComfyUI IMAGE `[B, H, W, C]` -> image tokens `[B, 16, C]`; `encode_official(x)` takes
    the official `[B, 3, H, W]` in [-1, 1]; `unconditional_tokens()`: tokens of the mid-grey image.
    """

    def __init__(self, visual_sd: dict, projection_sd: dict, vision_heads: int | None = None,
                 resampler_heads: int | None = None, dtype: torch.dtype | None = None):
        self.vision_config = infer_vision_config(visual_sd, vision_heads)
        self.resampler_config = infer_resampler_config(projection_sd, resampler_heads)
        self.load_device = mm.text_encoder_device()
        offload_device = mm.text_encoder_offload_device()
        self.dtype = dtype or mm.text_encoder_dtype(self.load_device)
        self.model = ImageEncoderModule(self.vision_config, self.resampler_config, dtype=self.dtype, device=offload_device)
        self.model.eval()
        converted = comfy.clip_vision.convert_to_transformers({"visual." + k: v for k, v in visual_sd.items()}, "visual.")
        converted.pop("visual_projection.weight", None)          # `proj`: not used (tokens before ln_post/proj)
        state = {"visual." + k: v for k, v in converted.items()}
        state.update({"resampler." + k: v for k, v in projection_sd.items()})
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"image encoder weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.load_device,
                                                        offload_device=offload_device)
        self._unconditional = None
        self.token_count = self.resampler_config["num_queries"]
        self.token_width = self.resampler_config["output_dim"]

    def _run(self, fn, x: torch.Tensor) -> torch.Tensor:
        mm.load_model_gpu(self.patcher)
        with torch.no_grad():
            out = fn(x.to(self.load_device, torch.float32))
        return out.to(mm.intermediate_device(), torch.float32)

    def embed_official(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` in [-1, 1] -> the visual tower's tokens `[B, N, width]` (before the Resampler)."""
        return self._run(lambda t: self.model.embed(preprocess(t, self.model.image_size)), x)

    def encode_official(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, 3, H, W]` in [-1, 1] -> image tokens `[B, num_queries, output_dim]`."""
        options = self.patcher.model_options.get("transformer_options", {})
        return self._run(lambda t: self.model(t, options), x)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """ComfyUI IMAGE `[B, H, W, C]` in [0, 1] -> image tokens `[B, num_queries, output_dim]`."""
        return self.encode_official(comfy_image_to_official(image))

    def unconditional_tokens(self) -> torch.Tensor:
        """Tokens of the official unconditional image (mid-grey) `[1, num_queries, output_dim]` (computed once)."""
        if self._unconditional is None:
            self._unconditional = self.encode_official(unconditional_image(self.model.image_size))
        return self._unconditional.clone()


def has_image_encoder(parts: dict) -> bool:
    embedder = parts.get("image_embedder", {})
    return any(k.startswith("visual.") for k in embedder) and bool(parts.get("image_projection"))


def build_image_encoder(parts: dict, vision_heads: int | None = None, resampler_heads: int | None = None,
                        dtype: torch.dtype | None = None) -> VideoCrafterImageEncoder | None:
    """The image encoder of an I2V checkpoint's split parts, or None when the checkpoint has none (T2V)."""
    if not has_image_encoder(parts):
        return None
    visual = {k[len("visual."):]: v for k, v in parts["image_embedder"].items() if k.startswith("visual.")}
    return VideoCrafterImageEncoder(visual, parts["image_projection"], vision_heads=vision_heads,
                                    resampler_heads=resampler_heads, dtype=dtype)
