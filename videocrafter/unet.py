"""The VideoCrafter2 (LVDM) 3D UNet, built on ComfyUI's layers and operations.

Source of the architecture: AILab-CVC/VideoCrafter `lvdm/modules/networks/openaimodel3d.py` and
`lvdm/modules/attention.py` (identical in jjihwan/FIFO-Diffusion_public), config
`configs/inference_t2v_512_v2.0.yaml`. docs/videocrafter2.md, "The UNet" (the layout) and "The UNet in
ComfyUI" (the conventions and patch points below).

Layout: frames as batch. The UNet takes `x` of shape `[B*T, C, h, w]` (B videos of T frames each, frames
of one video consecutive) and one timestep per frame `[B*T]` (FIFO's diagonal denoising) or one per video
`[B]`. Spatial layers work per frame; temporal layers regroup to `[B, C, T, h, w]`.

T (the video length) is `transformer_options["video_length"]` when set (the FIFO sampler and
Video-Infinity set it), else `x.shape[0] // len(transformer_options["cond_or_uncond"])`, which is right
for ComfyUI's stock samplers (one video per cond/uncond batch entry).

Patch points, besides ComfyUI's own attn1/attn2 patches and replaces of the spatial transformers (which
are ComfyUI's `SpatialTransformer`, so every pack's attention patch works here):

- `transformer_options["patches"]["temporal_query"]`: list of `fn(q, extra_options) -> q`, called in every
  temporal attention right after `to_q`; `q` is `[B*h*w, T, heads*dim_head]`. Used by the weighted Q-cache.
Replace patches follow ComfyUI's form `patches_replace[name][key] = fn` (so ModelPatcher can move and list
them): `key` is a block (e.g. `("output", 3)`) or `"all"` for every block without its own entry.

- `transformer_options["patches_replace"]["temporal_attention"]`: `fn(q, k, v, extra_options) -> out`
  replacing the attention product of every temporal attention (out `[B*h*w, T, heads*dim_head]`, before
  `to_out`). Used by Video-Infinity's dual-scope attention.
- `transformer_options["patches_replace"]["temporal_conv"]`: `fn(block, x, extra_options) -> out` replacing
  `TemporalConvBlock.forward` on `x` `[B, C, T, h, w]`. Used by Video-Infinity's neighbour context.
- `transformer_options["patches_replace"]["temporal_norm"]`: `fn(norm, x, extra_options) -> out` replacing
  the GroupNorm of every temporal transformer on `x` `[B, C, T, h, w]`. Used by Video-Infinity's
  synchronised GroupNorm.

`extra_options` holds the transformer options (patches included) plus `block` (("input", i), ("middle", 0),
("output", i) or ("init", 0)), `attention` ("attn1"/"attn2"), `n_heads`, `dim_head`, `video_length` and
`timesteps` (the `[B*T]` timesteps of this forward pass).
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

import comfy.ops
import comfy.patcher_extension
from comfy.ldm.modules.attention import FeedForward, SpatialTransformer, optimized_attention_for_device
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, ResBlock, Upsample
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

DEFAULT_FPS = 8


@functools.cache
def temporal_conv_class(operations) -> type:
    """`operations.Conv3d` for the (3, 1, 1) temporal kernels, run as a 2-D convolution on the CPU with oneDNN.

    A (3, 1, 1) kernel on `[B, C, T, h, w]` is the (3, 1) kernel on `[B, C, T, h*w]`, same weights: PyTorch
    picks no oneDNN kernel for these 3-D fp32 convolutions (`slow_conv3d`, 2-3x slower than the oneDNN 2-D one
    at the tiny model's sizes, README "Performance"). Elsewhere (CUDA, or oneDNN switched off, where
    PyTorch's own kernels give the same rounding at every batch size) the host's own Conv3d runs, its cuDNN
    work-arounds included. The subclass only replaces `_conv_forward`, which the host's weight casting calls too, so
    manual cast, fp8 storage, offloading and weight patches work as on any comfy.ops layer; the checkpoint
    keys and shapes are the Conv3d ones."""
    def _conv_forward(self, input, weight, bias, *args, autopad=None, **kwargs):
        if (input.device.type != "cpu" or not torch.backends.mkldnn.enabled or args or kwargs or autopad is not None
                or weight.shape[3:] != (1, 1)):
            extra = {} if autopad is None else {"autopad": autopad}
            return operations.Conv3d._conv_forward(self, input, weight, bias, *args, **extra, **kwargs)
        out = torch.nn.functional.conv2d(input.flatten(3), weight.flatten(3), bias, self.stride[:2],
                                         self.padding[:2], self.dilation[:2], self.groups)
        return out.unflatten(3, input.shape[3:])
    return type("TemporalConv3d", (operations.Conv3d,), {"_conv_forward": _conv_forward, "__module__": __name__})


def find_replace(extra_options: dict, name: str):
    """The replace patch `name` for the current block: `patches_replace[name][block]`, else `[name]["all"]`."""
    table = extra_options.get("patches_replace", {}).get(name)
    if not table:
        return None
    return table.get(extra_options.get("block"), table.get("all"))


class TemporalConvBlock(nn.Module):
    """Four (GroupNorm, SiLU, Conv3d (3, 1, 1)) stages with a residual, mixing neighbouring frames.

    Input and output `[B, C, T, h, w]`; frames outside the clip are zero padding (official
    `TemporalConvBlock`, keys `conv{1..4}`; the stage-2..4 Dropout(0.1) is inactive in inference).
    """

    def __init__(self, channels, dtype=None, device=None, operations=comfy.ops.disable_weight_init):
        super().__init__()
        conv = temporal_conv_class(operations)

        def stage(with_dropout):
            layers = [operations.GroupNorm(32, channels, dtype=dtype, device=device), nn.SiLU()]
            if with_dropout:
                layers.append(nn.Dropout(0.1))
            layers.append(conv(channels, channels, (3, 1, 1), padding=(1, 0, 0), dtype=dtype, device=device))
            return nn.Sequential(*layers)
        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def convolutions(self, x):
        """The four stages without the residual, `[B, C, T', h, w] -> [B, C, T', h, w]`."""
        return self.conv4(self.conv3(self.conv2(self.conv1(x))))

    def forward(self, x, extra_options=None):
        if extra_options is not None:
            replace = find_replace(extra_options, "temporal_conv")
            if replace is not None:
                return replace(self, x, extra_options)
        return x + self.convolutions(x)


class ResBlock3D(ResBlock):
    """ComfyUI's ResBlock followed by the temporal convolution block `temopral_conv` (sic, checkpoint key)."""

    def __init__(self, channels, emb_channels, out_channels, temporal_conv, dtype=None, device=None, operations=None):
        super().__init__(channels, emb_channels, 0.0, out_channels=out_channels, dtype=dtype, device=device,
                         operations=operations)
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(self.out_channels, dtype=dtype, device=device, operations=operations)
        else:
            self.temopral_conv = None

    def forward(self, x, emb, video_length=None, extra_options=None):
        h = self._forward(x, emb)
        if self.temopral_conv is not None and video_length is not None:
            b = h.shape[0] // video_length
            h5 = h.unflatten(0, (b, video_length)).transpose(1, 2)            # [B, C, T, h, w]
            h5 = self.temopral_conv(h5, extra_options)
            h = h5.transpose(1, 2).flatten(0, 1)
        return h


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frames of each spatial position, no positional encoding.

    Keys `to_q`, `to_k`, `to_v` (no bias) and `to_out.0`. Input and output `[B*h*w, T, C]`.
    """

    def __init__(self, query_dim, heads, dim_head, name, dtype=None, device=None, operations=None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.name = name
        self.to_q = operations.Linear(query_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(query_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(query_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_out = nn.Sequential(operations.Linear(inner, query_dim, dtype=dtype, device=device), nn.Dropout(0.0))

    def forward(self, x, extra_options):
        extra_options = dict(extra_options, attention=self.name, n_heads=self.heads, dim_head=self.dim_head)
        q = self.to_q(x)
        for patch in extra_options.get("patches", {}).get("temporal_query", ()):
            q = patch(q, extra_options)
        k = self.to_k(x)
        v = self.to_v(x)
        replace = find_replace(extra_options, "temporal_attention")
        if replace is not None:
            out = replace(q, k, v, extra_options)
        else:
            # The host's choice for short sequences (T frames, 16 in VideoCrafter2), as its text encoders use:
            # PyTorch's SDPA where the host enables it (NVIDIA), else the plain product, which its sub-quadratic
            # attention would fall back to at this length anyway. A model's attention override (core's Model
            # Attention Backend node) still applies: the host's functions honour `optimized_attention_override`.
            attention = optimized_attention_for_device(q.device, small_input=True)
            out = attention(q, k, v, self.heads, transformer_options=extra_options)
        return self.to_out(out)


class TemporalTransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention (attn1), self-attention (attn2), GEGLU feed-forward."""

    def __init__(self, dim, heads, dim_head, dtype=None, device=None, operations=None):
        super().__init__()
        self.attn1 = TemporalAttention(dim, heads, dim_head, "attn1", dtype=dtype, device=device, operations=operations)
        self.ff = FeedForward(dim, glu=True, dtype=dtype, device=device, operations=operations)
        self.attn2 = TemporalAttention(dim, heads, dim_head, "attn2", dtype=dtype, device=device, operations=operations)
        self.norm1 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm2 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm3 = operations.LayerNorm(dim, dtype=dtype, device=device)

    def forward(self, x, extra_options):
        x = self.attn1(self.norm1(x), extra_options) + x
        x = self.attn2(self.norm2(x), extra_options) + x
        return self.ff(self.norm3(x)) + x


class TemporalTransformer(nn.Module):
    """GroupNorm over the clip, projection, one temporal block per depth, projection, residual.

    Input and output `[B*T, C, h, w]` (frames as batch); attends over the T frames of each video.
    `use_linear=False` (the `init_attn`) uses Conv1d projections, as the official code.
    """

    def __init__(self, channels, heads, dim_head, depth=1, use_linear=True, dtype=None, device=None, operations=None):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = operations.GroupNorm(32, channels, eps=1e-6, affine=True, dtype=dtype, device=device)
        if use_linear:
            self.proj_in = operations.Linear(channels, inner, dtype=dtype, device=device)
            self.proj_out = operations.Linear(inner, channels, dtype=dtype, device=device)
        else:
            self.proj_in = operations.Conv1d(channels, inner, 1, dtype=dtype, device=device)
            self.proj_out = operations.Conv1d(inner, channels, 1, dtype=dtype, device=device)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(inner, heads, dim_head, dtype=dtype, device=device, operations=operations)
             for _ in range(depth)])

    def forward(self, x, video_length, extra_options):
        n, c, h, w = x.shape
        b = n // video_length
        x_in = x
        x = x.unflatten(0, (b, video_length)).transpose(1, 2)                    # [B, C, T, h, w]
        norm_replace = find_replace(extra_options, "temporal_norm")
        x = self.norm(x) if norm_replace is None else norm_replace(self.norm, x, extra_options)
        x = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, video_length)       # [B*h*w, C, T]
        if self.use_linear:
            x = self.proj_in(x.transpose(1, 2))
        else:
            x = self.proj_in(x).transpose(1, 2)                                  # [B*h*w, T, inner]
        for block in self.transformer_blocks:
            x = block(x, extra_options)
        if self.use_linear:
            x = self.proj_out(x).transpose(1, 2)
        else:
            x = self.proj_out(x.transpose(1, 2))                                 # [B*h*w, C, T]
        x = x.reshape(b, h, w, c, video_length).permute(0, 4, 3, 1, 2).reshape(n, c, h, w)
        return x + x_in


def supports_patch_points(unet, *names: str) -> bool:
    """True if the diffusion model `unet` runs every one of the pack's patch points `names` (its `PATCH_POINTS`).
    A check by interface, not by class, so it holds for any copy of the pack a host has imported."""
    return unet is not None and set(names) <= set(getattr(unet, "PATCH_POINTS", ()))


class UNet3D(nn.Module):
    """VideoCrafter2's text-to-video UNet (also VideoCrafter1's, which has the same structure).

    Constructor arguments are the official `unet_config` fields (see `videocrafter.convert.infer_unet_config`);
    `relative_position`, `causal_attention`, `tempspatial_aware`, `use_scale_shift_norm` and
    `resblock_updown` are not supported (VideoCrafter1/2 leave them off).

    forward(x, timesteps, context, transformer_options, fps):
      x `[B*T, in_channels, h, w]` with h, w divisible by 2**(levels-1); timesteps `[B*T]` or `[B]`
      (0-999, float); context `[B*T or B, tokens, context_dim]`; fps `[B*T]`, `[B]`, a number or None
      (8). Returns the predicted noise `[B*T, out_channels, h, w]`.
    """

    # The pack's own patch points this UNet runs (module docstring); the bridges check a model by them
    # (`supports_patch_points`), so another model family that runs the same points gets the same features.
    PATCH_POINTS = ("temporal_query", "temporal_attention", "temporal_conv", "temporal_norm")

    def __init__(self, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=2,
                 attention_resolutions=(4, 2, 1), channel_mult=(1, 2, 4, 4), num_head_channels=64,
                 transformer_depth=1, context_dim=1024, use_linear=True, temporal_conv=True,
                 temporal_attention=True, addition_attention=True, fps_cond=True, image_cross_attention=False,
                 dtype=None, device=None, operations=comfy.ops.disable_weight_init, **unused):
        super().__init__()
        self.dtype = dtype
        self.model_channels = model_channels
        self.fps_cond = fps_cond
        self.image_cross_attention = image_cross_attention
        emb_dim = model_channels * 4
        kw = dict(dtype=dtype, device=device, operations=operations)

        self.time_embed = nn.Sequential(operations.Linear(model_channels, emb_dim, dtype=dtype, device=device), nn.SiLU(),
                                        operations.Linear(emb_dim, emb_dim, dtype=dtype, device=device))
        if fps_cond:
            self.fps_embedding = nn.Sequential(operations.Linear(model_channels, emb_dim, dtype=dtype, device=device),
                                               nn.SiLU(), operations.Linear(emb_dim, emb_dim, dtype=dtype, device=device))

        def attention_layers(ch):
            heads = ch // num_head_channels
            layers = [SpatialTransformer(ch, heads, num_head_channels, depth=transformer_depth, context_dim=context_dim,
                                         use_linear=use_linear, use_checkpoint=False, **kw)]
            # -- VideoCrafter1 image-to-video (docs/videocrafter2.md, "Image-to-video (VideoCrafter1)"): image
            # cross-attention (to_k_ip/to_v_ip) in every spatial attn2
            if image_cross_attention:
                from .image_attention import add_image_cross_attention
                add_image_cross_attention(layers[0], context_dim, **kw)
            # -- end image-to-video
            if temporal_attention:
                layers.append(TemporalTransformer(ch, heads, num_head_channels, depth=transformer_depth,
                                                  use_linear=use_linear, **kw))
            return layers

        self.input_blocks = nn.ModuleList([nn.ModuleList([operations.conv_nd(2, in_channels, model_channels, 3, padding=1,
                                                                             dtype=dtype, device=device)])])
        self.init_attn = None
        if addition_attention:
            self.init_attn = nn.ModuleList([TemporalTransformer(model_channels, 8, num_head_channels,
                                                                depth=transformer_depth, use_linear=False, **kw)])
        skip_channels = [model_channels]
        ch = model_channels
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock3D(ch, emb_dim, mult * model_channels, temporal_conv, **kw)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers += attention_layers(ch)
                self.input_blocks.append(nn.ModuleList(layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(nn.ModuleList([Downsample(ch, True, out_channels=ch, **kw)]))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = nn.ModuleList([ResBlock3D(ch, emb_dim, ch, temporal_conv, **kw), *attention_layers(ch),
                                           ResBlock3D(ch, emb_dim, ch, temporal_conv, **kw)])

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock3D(ch + skip_channels.pop(), emb_dim, mult * model_channels, temporal_conv, **kw)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers += attention_layers(ch)
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, True, out_channels=ch, **kw))
                    ds //= 2
                self.output_blocks.append(nn.ModuleList(layers))

        self.out = nn.Sequential(operations.GroupNorm(32, ch, dtype=dtype, device=device), nn.SiLU(),
                                 operations.conv_nd(2, model_channels, out_channels, 3, padding=1, dtype=dtype, device=device))

    def _run_block(self, layers, h, emb, context, video_length, transformer_options, extra_options, output_shape=None):
        """One input/middle/output block, as core's `forward_timestep_embed`: its `forward_timestep_embed_patch`
        handlers (`(layer class, fn)` pairs) replace a layer of that class, spatial transformers advance
        `transformer_index`, Upsample gets the skip's `output_shape`."""
        handlers = transformer_options.get("patches", {}).get("forward_timestep_embed_patch", ())
        for layer in layers:
            handler = next((fn for kind, fn in handlers if isinstance(layer, kind)), None)
            if handler is not None:
                h = handler(layer, h, emb, context, transformer_options, output_shape, None, video_length, None)
            elif isinstance(layer, ResBlock3D):
                h = layer(h, emb, video_length, extra_options)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, transformer_options)
                transformer_options["transformer_index"] += 1
            elif isinstance(layer, TemporalTransformer):
                h = layer(h, video_length, extra_options)
            elif isinstance(layer, Upsample):
                h = layer(h, output_shape=output_shape)
            else:
                h = layer(h)
        return h

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, **kwargs):
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(
            self._forward, self,
            comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, transformer_options)
        ).execute(x, timesteps, context, control, transformer_options, **kwargs)

    def _forward(self, x, timesteps, context=None, control=None, transformer_options={}, fps=None, **kwargs):
        # Follows core's UNetModel._forward (comfy/ldm/modules/diffusionmodules/openaimodel.py): the same
        # transformer options (`original_shape`, `transformer_index`, `block`), patch points (`emb_patch`,
        # `input_block_patch`, `input_block_patch_after_skip`, `middle_block_after_patch`,
        # `output_block_patch`, `forward_timestep_embed_patch`) and ControlNet residuals (`control` input /
        # middle / output lists, popped from the end).
        transformer_options = dict(transformer_options)
        transformer_options["original_shape"] = list(x.shape)
        transformer_options["transformer_index"] = 0
        n = x.shape[0]
        video_length = transformer_options.get("video_length")
        if video_length is None:
            video_length = n // max(1, len(transformer_options.get("cond_or_uncond", [0])))
        if video_length < 1 or n % video_length:
            raise ValueError(f"UNet3D: a batch of {n} frames cannot be split into videos of video_length={video_length} frames")
        timesteps = _per_frame(timesteps, n, video_length, "timesteps")
        context = _per_frame(context, n, video_length, "context")
        patches = transformer_options.get("patches", {})

        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        for patch in patches.get("emb_patch", ()):
            emb = patch(emb, self.model_channels, transformer_options)
        if self.fps_cond:
            fps = torch.full((n,), float(DEFAULT_FPS), device=x.device) if fps is None else fps
            if not torch.is_tensor(fps):
                fps = torch.full((n,), float(fps), device=x.device)
            fps = _per_frame(fps.reshape(-1), n, video_length, "fps")
            emb = emb + self.fps_embedding(timestep_embedding(fps, self.model_channels).to(x.dtype))

        extra_options = transformer_options       # the temporal layers see the same options (and `block`)
        extra_options.update(video_length=video_length, timesteps=timesteps)

        h = x
        skips = []
        for i, layers in enumerate(self.input_blocks):
            transformer_options["block"] = ("input", i)
            h = self._run_block(layers, h, emb, context, video_length, transformer_options, extra_options)
            if i == 0 and self.init_attn is not None:
                transformer_options["block"] = ("init", 0)
                h = self._run_block(self.init_attn, h, emb, context, video_length, transformer_options, extra_options)
                transformer_options["block"] = ("input", i)
            h = _apply_control(h, control, "input")
            for patch in patches.get("input_block_patch", ()):
                h = patch(h, transformer_options)
            skips.append(h)
            for patch in patches.get("input_block_patch_after_skip", ()):
                h = patch(h, transformer_options)

        transformer_options["block"] = ("middle", 0)
        h = self._run_block(self.middle_block, h, emb, context, video_length, transformer_options, extra_options)
        h = _apply_control(h, control, "middle")
        for patch in patches.get("middle_block_after_patch", ()):
            h = patch({"h": h, "x": x, "emb": emb, "context": context, "y": None, "timesteps": timesteps,
                       "transformer_options": transformer_options})["h"]

        for i, layers in enumerate(self.output_blocks):
            transformer_options["block"] = ("output", i)
            skip = _apply_control(skips.pop(), control, "output")
            for patch in patches.get("output_block_patch", ()):
                h, skip = patch(h, skip, transformer_options)
            h = torch.cat([h, skip], dim=1)
            output_shape = skips[-1].shape if skips else None
            h = self._run_block(layers, h, emb, context, video_length, transformer_options, extra_options, output_shape)
        return self.out(h.type(x.dtype))


def _apply_control(h, control, name):
    """Add the last residual of `control[name]` (ControlNet / T2I-Adapter), as core's `apply_control`."""
    if control is not None and control.get(name):
        residual = control[name].pop()
        if residual is not None:
            h = h + residual
    return h


def _per_frame(value, n, video_length, name):
    """Expand a per-video tensor `[B, ...]` (or `[1, ...]`) to per-frame `[B*T, ...]`; pass `[B*T, ...]` through."""
    if value is None or value.shape[0] == n:
        return value
    b = n // video_length
    if value.shape[0] == b:
        return value.repeat_interleave(video_length, dim=0)
    if value.shape[0] == 1:
        return value.expand(n, *value.shape[1:])
    raise ValueError(f"UNet3D: {name} has {value.shape[0]} entries; expected {n} (one per frame), "
                     f"{b} (one per video) or 1")
