"""Video-Infinity in ComfyUI: the temporal-layer patches, the clip-parallel model call, the model patch, the
per-clip prompts and the clip-parallel decode (the algorithm: `attention/video_infinity.py`; where clips run:
`parallel/transport.py`; docs/video_infinity.md).

Written against the patch points of `videocrafter/unet.py` and the call convention of ComfyUI's wrapper
executors (`executor(*args, **kwargs)`, `executor.class_obj`).

How a patched model runs (the Apply Video-Infinity node installs all of this on a model clone):

1. `transformer_options["video_length"] = F`, so the UNet treats every F frames of the batch as one clip.
2. The DIFFUSION_MODEL wrapper (`VideoInfinityRuntime.diffusion_model_wrapper`) receives the long batch
   `[chunks * W * F, 4, h, w]` (chunks = the cond/uncond batches ComfyUI stacked), checks it, and lets the
   transport run the clips: every participant (one call, a thread per device group, or a rank) calls the
   UNet on its clips' rows with a `ClipCall` in `transformer_options["video_infinity_call"]`.
3. Inside that call the UNet's patch points hand every temporal layer to the functions below, which build
   the local/global context through the participant's endpoint (`attention.video_infinity`).
4. The participants' outputs are put back together in clip order: the caller gets `[chunks * W * F, ...]`.

Patch points used (videocrafter/unet.py): `patches_replace["temporal_attention"]` (all temporal
attentions: both attn1 and attn2 of every temporal transformer and the init_attn),
`patches_replace["temporal_conv"]` (every TemporalConvBlock) and, with synchronised GroupNorm,
`patches_replace["temporal_norm"]` (the GroupNorm of every temporal transformer).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

import comfy.patcher_extension

from ..attention.video_infinity import (VideoInfinityError, VideoInfinityOptions, check_clips, clip_count,
                                        dual_scope_attention, pad_with_neighbours, partition_clips, prompt_index,
                                        synced_group_norm)
from ..parallel.transport import (DistributedTransport, Endpoint, InProcessTransport, LocalEndpoint, Transport,
                                  distributed_ready, parse_devices, resolve_transport, same_device)
from ..videocrafter.unet import supports_patch_points
from .device_groups import DeviceReplicas, in_group_call, run_on_groups

log = logging.getLogger("fifo_infinity")

CALL_KEY = "video_infinity_call"
WRAPPER_KEY = "video_infinity"
OPTIONS_KEY = "video_infinity"


@dataclass
class ClipCall:
    """What the temporal-layer patches of one participant's UNet call need."""
    options: VideoInfinityOptions
    endpoint: Endpoint
    chunks: int


def clip_call(extra_options: dict) -> ClipCall:
    """The participant's call context; without the wrapper (a direct UNet call) the batch is one participant."""
    call = extra_options.get(CALL_KEY)
    if call is not None:
        return call
    options = extra_options.get(OPTIONS_KEY)
    if options is None:
        raise VideoInfinityError("a Video-Infinity patch ran without its options: apply the model with the "
                                 "Apply Video-Infinity node")
    f = options.frames_per_clip
    chunks = max(1, len(extra_options.get("cond_or_uncond") or [0]))
    frames = extra_options["timesteps"].shape[0]
    clips = clip_count(frames // chunks, f)
    return ClipCall(options, LocalEndpoint(clips, extra_options["timesteps"].device), chunks)


# ---------------------------------------------------------------------------------------------------
# The temporal-layer patches
# ---------------------------------------------------------------------------------------------------

def temporal_attention_patch(q, k, v, extra_options):
    """`patches_replace["temporal_attention"]`: dual-scope attention (paper, "Dual-scope attention") of one participant.

    q, k, v `[chunks * clips * h * w, F, heads * dim_head]` after to_q/to_k/to_v; returns the product before
    `to_out`. Uses `extra_options["timesteps"]` (per frame) for the phase biases.
    """
    call = clip_call(extra_options)
    return dual_scope_attention(q, k, v, extra_options["n_heads"], extra_options["timesteps"], call.options,
                                call.endpoint, call.chunks)


def temporal_conv_patch(block, x, extra_options):
    """`patches_replace["temporal_conv"]`: a TemporalConvBlock on clips with their neighbours' frames.

    x `[chunks * clips, C, F, h, w]`. Each clip gets `conv_context_frames` input frames of each neighbour
    (zeros at the video ends), runs the block's four stages, loses the context again and adds its input
    (official `ConvLayerPlugin`; docs/video_infinity.md, "Temporal convolution context"). With synchronised
    GroupNorm (docs/video_infinity.md, "Synchronised GroupNorm") the stages' GroupNorms take
    their statistics over all clips (of the padded inputs, as the paper's GroupNorm plugin would).
    """
    call = clip_call(extra_options)
    pad = call.options.conv_context_frames
    videos, channels, frames = x.shape[:3]
    clips = call.endpoint.local_clips
    x6 = x.view(call.chunks, clips, *x.shape[1:])
    padded = pad_with_neighbours(x6, 3, pad, call.endpoint).flatten(0, 1)
    if call.options.sync_group_norm:
        y = padded
        for stage in (block.conv1, block.conv2, block.conv3, block.conv4):
            for layer in stage:
                if isinstance(layer, torch.nn.GroupNorm):
                    y = _synced_norm(layer, y, call)
                else:
                    y = layer(y)
    else:
        y = block.convolutions(padded)
    if pad:
        y = y[:, :, pad:pad + frames]
    return x + y


def temporal_norm_patch(norm, x, extra_options):
    """`patches_replace["temporal_norm"]`: a temporal transformer's GroupNorm with statistics over all clips.

    x `[chunks * clips, C, F, h, w]` (paper section 4.2, synchronised GroupNorm; not in the released code).
    """
    return _synced_norm(norm, x, clip_call(extra_options))


def _synced_norm(norm: torch.nn.GroupNorm, x: torch.Tensor, call: ClipCall) -> torch.Tensor:
    clips = call.endpoint.local_clips
    weight = _module_tensor(norm, "weight", x)
    bias = _module_tensor(norm, "bias", x)
    x6 = x.view(call.chunks, clips, *x.shape[1:])
    return synced_group_norm(x6, norm.num_groups, norm.eps, weight, bias, call.endpoint).view(x.shape)


def _module_tensor(module, name: str, like: torch.Tensor):
    """A norm's weight or bias on `like`'s device, with ComfyUI's on-the-fly weight functions (LoRA in lowvram
    mode) applied as comfy.ops would."""
    value = getattr(module, name, None)
    if value is None:
        return None
    value = value.to(device=like.device)
    for function in getattr(module, f"{name}_function", None) or ():
        value = function(value)
    return value


def install(transformer_options: dict, options: VideoInfinityOptions) -> dict:
    """A copy of `transformer_options` with the clip length, the options and the patches Video-Infinity needs.

    Only what is switched on is installed: without dual-scope attention the temporal attention is the
    UNet's own; without conv context and GroupNorm sync the temporal convolutions are the UNet's own.
    """
    out = dict(transformer_options)
    out["video_length"] = options.frames_per_clip
    out[OPTIONS_KEY] = options
    replace = dict(out.get("patches_replace", {}))
    for key in ("temporal_attention", "temporal_conv", "temporal_norm"):
        replace.pop(key, None)
    if options.dual_scope_attention:
        replace["temporal_attention"] = {"all": temporal_attention_patch}
    if options.conv_context_frames > 0 or options.sync_group_norm:
        replace["temporal_conv"] = {"all": temporal_conv_patch}
    if options.sync_group_norm:
        replace["temporal_norm"] = {"all": temporal_norm_patch}
    out["patches_replace"] = replace
    return out


# ---------------------------------------------------------------------------------------------------
# The clip-parallel model call
# ---------------------------------------------------------------------------------------------------

class VideoInfinityRuntime:
    """The wrappers and object patch one Apply Video-Infinity node puts on its model clone.

    Holds the options, the device spec (resolved at every call, so the same workflow runs in one process or
    under torchrun) and the device replicas of the UNet for in-process groups on other devices (made at the
    first call of a sampling, dropped when it ends: they copy the weights as loaded, LoRA patches included).
    """

    def __init__(self, options: VideoInfinityOptions, devices: str = ""):
        self.options = options
        self.devices = devices or ""
        parse_devices(self.devices)          # fail early on devices that do not exist
        self.replicas = DeviceReplicas()

    def transport(self) -> Transport:
        return resolve_transport(self.devices)

    # -- DIFFUSION_MODEL wrapper --------------------------------------------------------------------
    def diffusion_model_wrapper(self, executor, x, timesteps, context=None, control=None, transformer_options={},
                                *args, **kwargs):
        if in_group_call(transformer_options) or transformer_options.get(CALL_KEY) is not None:     # a participant's call
            return executor(x, timesteps, context, control, transformer_options, *args, **kwargs)
        options = self.options
        f = options.frames_per_clip
        chunks = max(1, len(transformer_options.get("cond_or_uncond") or [0]))
        rows = x.shape[0]
        if rows % chunks:
            raise VideoInfinityError(f"a batch of {rows} frames cannot hold {chunks} cond/uncond copies")
        clips = clip_count(rows // chunks, f)
        check_clips(options, clips)
        out = run_on_groups(executor, self.transport(), self.replicas, clips, f, chunks, x, timesteps, context,
                            control, transformer_options, args, kwargs,
                            call_options=lambda endpoint: {CALL_KEY: ClipCall(options, endpoint, chunks)})
        if not torch.isfinite(out).all():
            step = float(timesteps.max()) if torch.is_tensor(timesteps) else timesteps
            raise VideoInfinityError(
                f"the model output turned non-finite (NaN or inf) at the sampling step with timestep {step:.0f} "
                f"({clips} clips of {f} frames): check cfg and the model's dtype (fp16 can overflow)")
        return out

    # -- OUTER_SAMPLE wrapper: replicas live for one sampling -----------------------------------------
    def outer_sample_wrapper(self, executor, *args, **kwargs):
        try:
            log.info("Video-Infinity: clips of %d frames, %s", self.options.frames_per_clip, self.transport().describe())
        except Exception as error:       # noqa: BLE001 - the sampling itself reports the problem
            log.warning("Video-Infinity: %s", error)
        try:
            return executor(*args, **kwargs)
        finally:
            self.replicas.clear()

    # -- memory: this process computes only its share of the clips --------------------------------------
    def memory_fraction(self, load_device) -> float:
        try:
            transport = self.transport()
        except VideoInfinityError:
            return 1.0
        if isinstance(transport, DistributedTransport):
            return 1.0 / transport.participants()
        if isinstance(transport, InProcessTransport) and transport.devices:
            here = sum(1 for d in transport.devices if same_device(d, load_device))
            return max(here, 1) / len(transport.devices)
        return 1.0

    def local_frames(self, frames: int, load_device) -> int:
        """Frames of a `frames`-long batch this process runs on `load_device` at once (whole clips)."""
        f = self.options.frames_per_clip
        videos = max(1, frames // f)
        return min(frames, max(1, math.ceil(videos * self.memory_fraction(load_device))) * f)

    def prepare_sampling_wrapper(self, executor, model, noise_shape, *args, **kwargs):
        """PREPARE_SAMPLING wrapper: the memory estimate for this process's clips only. Hosts add arguments
        (v0.33: `force_full_load`, `force_offload`); they are passed on untouched."""
        shape = list(noise_shape)
        if shape:
            shape[0] = self.local_frames(shape[0], getattr(model, "load_device", "cpu"))
        return executor(model, shape, *args, **kwargs)

    def memory_required_patch(self, base_model):
        """An object patch for `BaseModel.memory_required` that estimates only this process's share (ComfyUI
        uses it to decide whether cond and uncond fit in one batch)."""
        return _ShareOfMemory(self, base_model)


class _ShareOfMemory:
    def __init__(self, runtime: VideoInfinityRuntime, base_model):
        self.runtime = runtime
        self.base_model = base_model

    def __call__(self, input_shape, *args, **kwargs):
        shape = list(input_shape)
        device = getattr(self.base_model, "device", None) or "cpu"
        shape[0] = self.runtime.local_frames(shape[0], device)
        return type(self.base_model).memory_required(self.base_model, shape, *args, **kwargs)


def apply_video_infinity(model, options: VideoInfinityOptions, devices: str = ""):
    """A clone of `model` (a ModelPatcher of our VideoCrafter model) patched for Video-Infinity: the temporal patch
    points in its transformer options, the DIFFUSION_MODEL / PREPARE_SAMPLING / OUTER_SAMPLE wrappers of a
    `VideoInfinityRuntime` running the clips where `devices` says (`parallel.transport.parse_devices`), and its
    memory estimate per participant. Raises VideoInfinityError for a model without the temporal patch points or
    bad devices."""
    unet = getattr(model.model, "diffusion_model", None)
    if not supports_patch_points(unet, "temporal_attention", "temporal_conv", "temporal_norm"):
        raise VideoInfinityError("the model is not a VideoCrafter 3D UNet: load it with VideoCrafter2 Checkpoint Loader")
    runtime = VideoInfinityRuntime(options, devices)
    patched = model.clone()
    patched.model_options["transformer_options"] = install(patched.model_options.get("transformer_options", {}), options)
    wrappers = comfy.patcher_extension.WrappersMP
    for kind, function in ((wrappers.DIFFUSION_MODEL, runtime.diffusion_model_wrapper),
                           (wrappers.PREPARE_SAMPLING, runtime.prepare_sampling_wrapper),
                           (wrappers.OUTER_SAMPLE, runtime.outer_sample_wrapper)):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, function)
    patched.add_object_patch("memory_required", runtime.memory_required_patch(patched.model))
    return patched



def per_clip_conditioning(prompts: list, options: VideoInfinityOptions, frames: int) -> list:
    """One CONDITIONING whose cross-attention holds, for every frame of the long latent, its clip's prompt."""
    clips = clip_count(frames, options.frames_per_clip)
    check_clips(options, clips)
    tensors = []
    for index, conditioning in enumerate(prompts):
        if len(conditioning) != 1:
            raise VideoInfinityError(f"prompt {index + 1} holds {len(conditioning)} conditionings; give one text "
                                     f"encoding per prompt (combined or area conditionings are not supported here)")
        tensor = conditioning[0][0]
        if tensor.shape[0] != 1:
            raise VideoInfinityError(f"prompt {index + 1} has a batch of {tensor.shape[0]}; expected one text encoding")
        tensors.append(tensor)
    if not tensors:
        raise VideoInfinityError("no prompt connected")
    tokens = math.lcm(*[t.shape[1] for t in tensors])
    if any(t.shape[2] != tensors[0].shape[2] for t in tensors):
        raise VideoInfinityError("the prompts come from different text encoders (different widths)")
    # longer prompts have more 77-token chunks: repeat the shorter ones (ComfyUI's own padding, same attention)
    tensors = [t.repeat(1, tokens // t.shape[1], 1) for t in tensors]
    f = options.frames_per_clip
    rows = [tensors[prompt_index(r, clips, len(tensors))].expand(f, -1, -1) for r in range(clips)]
    return [[torch.cat(rows, dim=0), dict(prompts[0][0][1])]]



def decode_clips(vae, latent: torch.Tensor, options: VideoInfinityOptions) -> torch.Tensor:
    """IMAGE `[W*F, H, W, 3]` of a long latent `[W*F, 4, h, w]`. Under torch.distributed each rank decodes its own
    clips (the same partition as sampling) and rank 0 gathers them and returns the whole video; the other ranks
    return their own clips' frames. Raises VideoInfinityError when the latent is not a whole number of clips."""
    clips = clip_count(latent.shape[0], options.frames_per_clip)
    if not distributed_ready():
        return _decode(vae, latent)
    transport = DistributedTransport()
    sizes = partition_clips(clips, transport.participants())
    f = options.frames_per_clip
    start = sum(sizes[:transport.rank]) * f
    mine = _decode(vae, latent[start:start + sizes[transport.rank] * f])
    everything = transport.gather_to_first(mine, [s * f for s in sizes])
    return everything if everything is not None else mine


def _decode(vae, latent):
    images = vae.decode(latent)
    if images.dim() == 5:
        images = images.reshape(-1, *images.shape[-3:])
    return images
