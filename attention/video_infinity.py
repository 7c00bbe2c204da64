"""Video-Infinity (Tan et al. 2024, arXiv 2406.16260): the pure-torch core. No ComfyUI import.

A long video of W*F frames is denoised as W clips of F frames in layer lockstep. Inside every temporal
layer a clip sees more than its own frames:

- temporal attention (paper, section "Dual-scope attention"): its own keys, `padding` keys of each
  neighbouring clip (local context; zeros at the video ends, left unmasked) and `global_frames` keys
  sampled with a stride from every clip (global context); timestep-dependent logit biases favour the
  global keys early (t >= global_phase.t) and the local keys late (t < local_phase.t);
- temporal convolution (paper section 4.2, "Clip parallelism"): `conv_context_frames` input frames of each
  neighbour (zeros at the ends), cropped again after the convolutions;
- optionally (paper section 4.2, footnote 4; NOT in the released code) GroupNorm statistics synchronised
  over all clips, for the temporal transformer norm and the temporal conv GroupNorms.

Everything here follows the official code (Yuanshi9815/Video-Infinity acfcd17,
`src/video_infinity/plugins.py`: `AttentionPlugin`, `ConvLayerPlugin`, `GroupNormPlugin`; docs/video_infinity.md
explains each rule and where the paper and the released code differ): the mask starts at +1, the "top_k" global set is a
stride, the global set keeps the clip's own frames, the zero context at the ends is not masked, logits are
`(q k^T) * scale + bias` then softmax, with `token_num_scale` the scale of a row is multiplied by
`ln(n) / ln(16)`.

Layout convention ("clip-major"): tensors that cross clip boundaries are `[chunks, clips, ...]` where
`chunks` is the number of cond/uncond batches ComfyUI stacked into one UNet call and `clips` the clips held
by one participant (see `parallel.transport`). The exchange between participants goes through an
`Endpoint` (`parallel.transport`); the functions here only decide what to send and how to assemble it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch


class VideoInfinityError(ValueError):
    """A Video-Infinity setting or input that cannot work, with a message for the user."""


@dataclass(frozen=True)
class Phase:
    """One phase of the timestep-dependent attention bias (official `attn.local_phase` / `global_phase`).

    `t`: threshold on the diffusion timestep (0-999); `local_bias` / `global_bias`: added to the logits of
    the local block (own frames and neighbours' padding) / of the global block. The local phase applies
    when `t_current < t`, the global phase when `t_current >= t` (paper, "Dual-scope attention"; docs/video_infinity.md,
    "The phase biases").
    """
    t: float
    local_bias: float
    global_bias: float


@dataclass(frozen=True)
class VideoInfinityOptions:
    """The options of Video-Infinity's context. Defaults = the official `examples/config.json`.

    frames_per_clip F: frames of one clip (official `num_frames`, 24).
    padding p: local context radius; query i of a clip sees own frames i-p .. i+p, reaching p frames
        into each neighbour (official `attn.padding`, 8).
    global_frames: size of the global key set (official `attn.top_k`, 16; a stride, not a top-k).
    local_phase, global_phase: the logit biases by timestep (official t 800, +10 local below, +10 global
        at or above).
    token_num_scale: multiply the softmax scale by ln(keys seen) / ln(16) (official, default off).
    attn_scale: multiplies 1/sqrt(head_dim) (official `attn.attn_scale`, 1.0).
    conv_context_frames: neighbour frames given to every temporal convolution block (official: the
        hard-coded 4 of `ConvLayerPlugin`).
    sync_group_norm: False = the released code (GroupNorm statistics per clip); True = the paper's
        synchronised statistics over all clips (temporal transformer norm and temporal conv GroupNorms).
    dual_scope_attention: False = plain attention within each clip (the context is switched off; with
        conv_context_frames 0 and sync_group_norm off every clip is then denoised independently).
    """
    frames_per_clip: int = 24
    padding: int = 8
    global_frames: int = 16
    local_phase: Phase = field(default_factory=lambda: Phase(800, 10.0, 0.0))
    global_phase: Phase = field(default_factory=lambda: Phase(800, 0.0, 10.0))
    token_num_scale: bool = False
    attn_scale: float = 1.0
    conv_context_frames: int = 4
    sync_group_norm: bool = False
    dual_scope_attention: bool = True

    def __post_init__(self):
        errors = option_errors(self)
        if errors:
            raise VideoInfinityError("; ".join(errors))

    @classmethod
    def from_official_config(cls, config: dict) -> "VideoInfinityOptions":
        """Options from an official Video-Infinity JSON config (`examples/config.json` layout).

        Reads `pipe_configs.num_frames`, `attn.{padding, top_k, attn_scale, token_num_scale,
        dynamic_scale, local_phase, global_phase}` with the official `*_biase` key spellings (the README's
        `topk` / `*_bias` are accepted too). `dynamic_scale: false` means no phase biases.
        """
        attn = config.get("attn", {})
        pipe = config.get("pipe_configs", {})

        def phase(entry):
            if not attn.get("dynamic_scale", True) or entry is None:
                return Phase(0, 0.0, 0.0)
            return Phase(entry["t"], float(entry.get("local_biase", entry.get("local_bias", 0.0))),
                         float(entry.get("global_biase", entry.get("global_bias", 0.0))))

        return cls(frames_per_clip=int(pipe.get("num_frames", 24)), padding=int(attn.get("padding", 8)),
                   global_frames=int(attn.get("top_k", attn.get("topk", 16))),
                   local_phase=phase(attn.get("local_phase")), global_phase=phase(attn.get("global_phase")),
                   token_num_scale=bool(attn.get("token_num_scale", False)),
                   attn_scale=float(attn.get("attn_scale", 1.0)))

    def as_dict(self) -> dict:
        return asdict(self)


def option_errors(options: VideoInfinityOptions) -> list[str]:
    """The problems of a set of options (empty if usable), worded for the node's user."""
    errors = []
    f, p = options.frames_per_clip, options.padding
    if f < 1:
        errors.append(f"frames_per_clip must be at least 1 (got {f})")
    if p < 0:
        errors.append(f"padding must be 0 or more (got {p})")
    elif f < 2 * p:
        errors.append(f"frames_per_clip = {f} is smaller than 2 * padding = {2 * p}: a clip must hold the "
                      f"{p} frames it gives to each neighbour; use padding <= {f // 2} or longer clips")
    if options.global_frames < 0:
        errors.append(f"global_frames must be 0 or more (got {options.global_frames})")
    if options.conv_context_frames < 0:
        errors.append(f"conv_context_frames must be 0 or more (got {options.conv_context_frames})")
    elif options.conv_context_frames > f:
        errors.append(f"conv_context_frames = {options.conv_context_frames} is more than a clip has "
                      f"(frames_per_clip = {f})")
    if options.attn_scale <= 0:
        errors.append(f"attn_scale must be positive (got {options.attn_scale})")
    return errors


# ---------------------------------------------------------------------------------------------------
# Clip partition (paper section 4.2; docs/video_infinity.md, "Clips")
# ---------------------------------------------------------------------------------------------------

def clip_count(frames: int, frames_per_clip: int) -> int:
    """W = frames / F for a long latent `[frames, 4, h, w]` (paper section 4.2: the video is cut into W clips of
    F frames); raises if it is not a whole number of clips."""
    if frames_per_clip < 1:
        raise VideoInfinityError(f"frames_per_clip must be at least 1 (got {frames_per_clip})")
    if frames < frames_per_clip or frames % frames_per_clip:
        lower = max(frames_per_clip, frames // frames_per_clip * frames_per_clip)
        raise VideoInfinityError(
            f"the latent has {frames} frames, which is not a whole number of clips of frames_per_clip = "
            f"{frames_per_clip}: use a multiple of {frames_per_clip} frames (e.g. {lower} or "
            f"{lower + frames_per_clip}) or change frames_per_clip")
    return frames // frames_per_clip


def check_clips(options: VideoInfinityOptions, clips: int) -> None:
    """Errors that depend on the video length W*F: the global set ("Dual-scope attention") cannot be larger than it."""
    total = clips * options.frames_per_clip
    if options.dual_scope_attention and options.global_frames > total:
        raise VideoInfinityError(
            f"global_frames = {options.global_frames} is larger than the whole video ({clips} clip(s) x "
            f"{options.frames_per_clip} frames = {total} frames): use global_frames <= {total}")


def partition_clips(clips: int, participants: int) -> list[int]:
    """`[P]` clips per participant, contiguous and in clip order; sizes differ by at most one (earlier ones
    larger). `[W]` for one participant. Every participant needs at least one clip. Paper section 4.2 (one clip
    per device); docs/video_infinity.md, "Where clips run".
    """
    if participants < 1:
        raise VideoInfinityError("at least one participant is needed")
    if clips < participants:
        raise VideoInfinityError(
            f"{clips} clip(s) cannot be spread over {participants} participants (devices or ranks): each "
            f"needs at least one clip; use a longer latent or fewer devices/ranks")
    base, extra = divmod(clips, participants)
    return [base + (1 if i < extra else 0) for i in range(participants)]


def prompt_index(clip: int, clips: int, prompts: int) -> int:
    """Which of P prompts conditions clip r of W: floor(r * P / W) (official `inference.py`; the paper's
    multi-prompt video of Fig. 1; docs/video_infinity.md, "Prompts per clip"). Returns an index in [0, P)."""
    if prompts < 1 or clips < 1 or not 0 <= clip < clips:
        raise VideoInfinityError(f"bad prompt assignment request: clip {clip} of {clips}, {prompts} prompts")
    return clip * prompts // clips


# ---------------------------------------------------------------------------------------------------
# Global context (paper, "Dual-scope attention", global context; docs/video_infinity.md, "Global context")
# ---------------------------------------------------------------------------------------------------

def global_frame_indices(frames_per_clip: int, clips: int, global_frames: int) -> tuple[list[int], int]:
    """(indices inside each clip, G): which frames every clip contributes to the global set and its size
    (paper, "Dual-scope attention", global context; docs/video_infinity.md, "Global context"). Returns a list of
    len ceil(F / stride) and an int.

    Official `get_topk`: share = global_frames // W, stride = max(F // share, 1) (10**6 if share is 0),
    indices = arange(0, F, stride), i.e. ceil(F / stride) frames per clip (not necessarily `share`); the
    set is the clips' contributions in clip order cut to `global_frames`, so G = min(global_frames,
    W * len(indices)). Examples: F 24, W 4, 16 -> [0, 6, 12, 18], G 16; F 13, W 3, 8 -> [0, 6, 12] x 3 cut
    to 8; W > global_frames -> [0] from the first `global_frames` clips.
    """
    share = global_frames // clips
    stride = max(frames_per_clip // share, 1) if share > 0 else 10 ** 6
    indices = list(range(0, frames_per_clip, stride))
    return indices, min(global_frames, clips * len(indices))


# ---------------------------------------------------------------------------------------------------
# Mask and biases (paper, "Dual-scope attention"; docs/video_infinity.md, "The attention mask", "The phase biases"
# and "The softmax scale")
# ---------------------------------------------------------------------------------------------------

MASK_BASE = 1.0           # the official mask starts at ones, not zeros
UNMASKED_ABOVE = -100.0   # token_num_scale counts the columns whose mask is >= -100


def base_mask(frames_per_clip: int, padding: int, global_count: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """`[F, F + 2p + G]`: +1 where a query may look, -inf elsewhere (paper, "Dual-scope attention";
    docs/video_infinity.md, "The attention mask").

    Columns: `[0, p)` left neighbour's last p frames (or zeros), `[p, F + p)` own frames, `[F + p, F + 2p)`
    right neighbour's first p frames (or zeros), then the G global frames. Row i sees local columns
    i .. i + 2p (own frames i - p .. i + p, 2p + 1 keys) and every global column.
    """
    f, p = frames_per_clip, padding
    local = f + 2 * p
    mask = torch.full((f, local + global_count), MASK_BASE, dtype=dtype, device=device)
    column = torch.arange(local, device=device)
    row = torch.arange(f, device=device)[:, None]
    outside = (column < row) | (column > row + 2 * p)
    mask[:, :local] = mask[:, :local].masked_fill(outside, float("-inf"))
    return mask


def attention_bias(timesteps: torch.Tensor, options: VideoInfinityOptions, global_count: int,
                   dtype=torch.float32) -> torch.Tensor:
    """`[..., F, S]` additive logits bias for queries at `timesteps` `[..., F]` (one timestep per query frame);
    paper, "Dual-scope attention" (the timestep-dependent balance of local and global context);
    docs/video_infinity.md, "The phase biases".

    base_mask, then (official order, each addition in `dtype`) the local phase's biases where t < its
    threshold, then the global phase's where t >= its threshold. With one timestep per call (the official
    setting) every row gets the same bias; per-frame timesteps bias each query row by its own frame's t.
    """
    f, p = options.frames_per_clip, options.padding
    local = f + 2 * p
    t = timesteps.float()
    bias = base_mask(f, p, global_count, dtype=dtype, device=timesteps.device).expand(*t.shape, -1).clone()
    for phase, active in ((options.local_phase, t < float(options.local_phase.t)),
                          (options.global_phase, t >= float(options.global_phase.t))):
        if not bool(active.any()):
            continue
        values = torch.cat([torch.full((local,), float(phase.local_bias)),
                            torch.full((global_count,), float(phase.global_bias))]).to(timesteps.device)
        bias = bias + (active[..., None].float() * values).to(dtype)
    return bias


def softmax_scale(head_dim: int, options: VideoInfinityOptions, bias: torch.Tensor) -> float | torch.Tensor:
    """1/sqrt(d) * attn_scale, or with token_num_scale a float32 `[..., F, 1]` tensor times ln(n)/ln(16),
    n = the number of columns of the row whose bias `[..., F, S]` is >= -100 (not in the paper; the official
    code's option, `my_attention`: log base 16, no root; docs/video_infinity.md, "The softmax scale")."""
    base = options.attn_scale / math.sqrt(head_dim)
    if not options.token_num_scale:
        return base
    seen = (bias >= UNMASKED_ABOVE).sum(-1, keepdim=True).float()
    return base * torch.log(seen) / math.log(16)


# ---------------------------------------------------------------------------------------------------
# Neighbour and global context through an Endpoint (paper section 4.2 and App. A.2; docs/video_infinity.md,
# "Context exchange")
# ---------------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What one participant's clips receive. Shapes for an input `[chunks, clips, *A, F, *B]`:
    left / right `[chunks, clips, *A, pad, *B]` (None without padding), global `[chunks, *A, G, *B]`
    (None without global set)."""
    left: torch.Tensor | None
    right: torch.Tensor | None
    global_frames: torch.Tensor | None


def exchange_context(tensors: list[torch.Tensor], time_dim: int, pad: int, endpoint,
                     global_indices: list[int] | None = None, global_count: int = 0) -> list[Context]:
    """Neighbour context (`pad` frames each side, zeros at the video ends) and the global set for each tensor
    (paper, "Clip parallelism" (section 4.2) and App. A.2; docs/video_infinity.md, "Context exchange"). Returns one
    `Context` per tensor.

    tensors: clip-major `[chunks, clips, ...]` (the participant's clips), frames on `time_dim` (>= 2), all
    with the same layout; K and V of one attention travel in one exchange. Every participant must call
    this with the same pad / indices and equal shapes except the clip dimension. One collective: each
    participant sends the first `pad` frames of its first clip, the last `pad` frames of its last clip and
    the strided frames of all its clips (padded to the largest participant's clip count); the rest of the
    neighbour context comes from its own clips.
    """
    sizes = endpoint.sizes
    index = endpoint.index
    most = max(sizes)
    send = []
    for x in tensors:
        frames = x.shape[time_dim]
        if pad > frames:
            raise VideoInfinityError(f"context of {pad} frames asked from clips of {frames} frames")
        if pad:
            send.append(x[:, 0].narrow(time_dim - 1, 0, pad).contiguous())
            send.append(x[:, -1].narrow(time_dim - 1, frames - pad, pad).contiguous())
        if global_indices is not None and global_count:
            send.append(_strided_frames(x, time_dim, global_indices, most))
    received = endpoint.all_gather(send) if send else [[] for _ in sizes]

    contexts = []
    per_tensor = (2 if pad else 0) + (1 if global_indices is not None and global_count else 0)
    for position, x in enumerate(tensors):
        frames = x.shape[time_dim]
        slot = position * per_tensor
        left = right = glob = None
        if pad:
            if index > 0:
                left_edge = received[index - 1][slot + 1]
            else:
                left_edge = torch.zeros_like(send[slot + 1])
            if index < len(sizes) - 1:
                right_edge = received[index + 1][slot]
            else:
                right_edge = torch.zeros_like(send[slot])
            left = torch.cat([left_edge.unsqueeze(1), x[:, :-1].narrow(time_dim, frames - pad, pad)], dim=1)
            right = torch.cat([x[:, 1:].narrow(time_dim, 0, pad), right_edge.unsqueeze(1)], dim=1)
            slot += 2
        if global_indices is not None and global_count:
            per_clip = len(global_indices)
            parts = [received[j][slot].narrow(time_dim - 1, 0, sizes[j] * per_clip) for j in range(len(sizes))]
            glob = torch.cat(parts, dim=time_dim - 1).narrow(time_dim - 1, 0, global_count)
        contexts.append(Context(left, right, glob))
    return contexts


def _strided_frames(x: torch.Tensor, time_dim: int, indices: list[int], most_clips: int) -> torch.Tensor:
    """`[chunks, *A, most_clips * len(indices), *B]` from `x` `[chunks, clips, *A, F, *B]`: frames `indices` of
    every clip, clip by clip, zero-padded to `most_clips` clips so every participant sends the same shape
    (paper, "Dual-scope attention", global context)."""
    picked = x.index_select(time_dim, torch.tensor(indices, device=x.device))   # [c, n, *A, k, *B]
    clips = x.shape[1]
    picked = picked.movedim(1, time_dim - 1).flatten(time_dim - 1, time_dim)    # [c, *A, n*k, *B]
    if clips < most_clips:
        shape = list(picked.shape)
        shape[time_dim - 1] = (most_clips - clips) * len(indices)
        picked = torch.cat([picked, picked.new_zeros(shape)], dim=time_dim - 1)
    return picked.contiguous()


def pad_with_neighbours(x: torch.Tensor, time_dim: int, pad: int, endpoint) -> torch.Tensor:
    """`[chunks, clips, *A, F + 2 pad, *B]` from `x` `[chunks, clips, *A, F, *B]`: each clip with `pad` frames
    of each neighbour (zeros at the ends).

    The temporal-convolution context (paper section 4.2; official `ConvLayerPlugin.pad_context`, 4 frames;
    docs/video_infinity.md, "Temporal convolution context").
    """
    if pad == 0:
        return x
    context = exchange_context([x], time_dim, pad, endpoint)[0]
    return torch.cat([context.left, x, context.right], dim=time_dim)


# ---------------------------------------------------------------------------------------------------
# Dual-scope attention (paper, "Dual-scope attention"; docs/video_infinity.md, "Local context", "Global context"
# and "The attention mask")
# ---------------------------------------------------------------------------------------------------

def dual_scope_keys(k: torch.Tensor, v: torch.Tensor, options: VideoInfinityOptions, endpoint,
                    clips_total: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Local + global keys and values for every query clip (paper, "Dual-scope attention"; docs/video_infinity.md,
    "Local context" and "Global context").

    k, v: `[chunks, clips, N, F, inner]` (N = spatial positions). Returns K, V `[chunks, clips, N, S, inner]`
    with S = F + 2p + G (left padding, own frames, right padding, global set) and G.
    """
    f = options.frames_per_clip
    indices, count = global_frame_indices(f, clips_total, options.global_frames)
    contexts = exchange_context([k, v], 3, options.padding, endpoint, indices, count)
    out = []
    for x, context in zip((k, v), contexts):
        parts = []
        if context.left is not None:
            parts += [context.left, x, context.right]
        else:
            parts.append(x)
        if context.global_frames is not None:
            glob = context.global_frames.unsqueeze(1).expand(-1, x.shape[1], -1, -1, -1)
            parts.append(glob)
        out.append(torch.cat(parts, dim=3) if len(parts) > 1 else x)
    return out[0], out[1], count


ATTENTION_CHUNK_ELEMENTS = 1 << 27   # logits per chunk of spatial positions (bounds the transient memory)


def scaled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor,
                     scale: float | torch.Tensor) -> torch.Tensor:
    """Explicit attention in the official order: logits = q k^T, then * scale, then + bias, softmax, @ v
    (paper, "Dual-scope attention"; official `my_attention`; docs/video_infinity.md, "The attention mask").

    q `[V, N, F, inner]`, k / v `[V, N, S, inner]`, bias `[V, F, S]` (q's dtype), scale a float or a
    float32 `[V, F, 1]` tensor. Heads split as `(.., F, heads, d) -> (.., heads, F, d)`. Returns
    `[V, N, F, inner]`. Spatial positions are processed in chunks to bound the logits' memory.
    """
    videos, positions, frames, inner = q.shape
    keys = k.shape[2]
    d = inner // heads
    per_position = videos * heads * frames * keys
    step = max(1, min(positions, ATTENTION_CHUNK_ELEMENTS // max(1, per_position)))
    bias = bias[:, None, None]
    if torch.is_tensor(scale):
        scale = scale[:, None, None]
    outputs = []
    for start in range(0, positions, step):
        stop = min(positions, start + step)
        qh = q[:, start:stop].unflatten(-1, (heads, d)).transpose(2, 3)        # [V, n, h, F, d]
        kh = k[:, start:stop].unflatten(-1, (heads, d)).transpose(2, 3)        # [V, n, h, S, d]
        vh = v[:, start:stop].unflatten(-1, (heads, d)).transpose(2, 3)
        logits = qh @ kh.transpose(-1, -2)                                      # [V, n, h, F, S]
        if torch.is_tensor(scale):
            logits = (logits.float() * scale).to(q.dtype)
        else:
            logits = logits * scale
        logits = logits + bias
        probs = torch.softmax(logits, dim=-1)
        out = probs @ vh                                                        # [V, n, h, F, d]
        outputs.append(out.transpose(2, 3).flatten(-2))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def dual_scope_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, timesteps: torch.Tensor,
                         options: VideoInfinityOptions, endpoint, chunks: int) -> torch.Tensor:
    """The whole dual-scope attention product for one participant's clips (before `to_out`); paper, "Dual-scope attention".

    q, k, v: `[chunks * clips * N, F, inner]` (rows video-major: chunk, clip, spatial position, as our
    temporal attention lays them out); timesteps: `[chunks * clips * F]` per-frame timesteps. Returns
    `[chunks * clips * N, F, inner]`.
    """
    f = options.frames_per_clip
    clips = endpoint.local_clips
    videos = chunks * clips
    if q.shape[1] != f or q.shape[0] % videos:
        raise VideoInfinityError(f"temporal attention input {tuple(q.shape)} does not hold {videos} videos of "
                                 f"{f} frames")
    positions = q.shape[0] // videos
    inner = q.shape[-1]
    k_full, v_full, count = dual_scope_keys(k.view(chunks, clips, positions, f, inner),
                                            v.view(chunks, clips, positions, f, inner), options, endpoint,
                                            endpoint.total_clips)
    keys = k_full.shape[3]
    bias = attention_bias(timesteps.reshape(videos, f), options, count, dtype=q.dtype)
    scale = softmax_scale(inner // heads, options, bias)
    out = scaled_attention(q.view(videos, positions, f, inner), k_full.view(videos, positions, keys, inner),
                           v_full.view(videos, positions, keys, inner), heads, bias, scale)
    return out.reshape(videos * positions, f, inner)


# ---------------------------------------------------------------------------------------------------
# Synchronised GroupNorm (paper section 4.2, footnote 4; official unmounted `GroupNormPlugin`)
# ---------------------------------------------------------------------------------------------------

def synced_group_norm(x: torch.Tensor, num_groups: int, eps: float, weight: torch.Tensor | None,
                      bias: torch.Tensor | None, endpoint) -> torch.Tensor:
    """GroupNorm of `x` `[chunks, clips, C, ...]` with statistics over all clips of the video.

    Per chunk (cond and uncond separately, as the official plugin keeps the batch) and group: the mean of
    every clip's elements, then the variance about that mean (two rounds, as the paper), so the result
    equals one GroupNorm over the whole video's frames whatever the clip partition. Statistics in float32.
    """
    chunks, clips, channels = x.shape[:3]
    grouped = x.float().reshape(chunks, clips, num_groups, -1)
    count = endpoint.total_clips * grouped.shape[-1]
    mean = endpoint.all_reduce_sum(grouped.sum(dim=(1, 3))) / count                       # [chunks, G]
    centred = grouped - mean[:, None, :, None]
    var = endpoint.all_reduce_sum((centred * centred).sum(dim=(1, 3))) / count
    normed = (centred * torch.rsqrt(var + eps)[:, None, :, None]).reshape(x.shape)
    affine_shape = [1, 1, channels] + [1] * (x.dim() - 3)
    if weight is not None:
        normed = normed * weight.float().reshape(affine_shape)
    if bias is not None:
        normed = normed + bias.float().reshape(affine_shape)
    return normed.to(x.dtype)
