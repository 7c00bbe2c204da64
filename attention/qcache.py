"""Weighted Q-cache (the FIFO+ fork's `TTqcache` / `STqcache`): pure logic, no ComfyUI import.

In the decoder of the UNet, the query of a chosen attention becomes

    q* = (1 - w) * q_decoder + w * q_encoder

where `q_encoder` is the query of the same attention in the encoder block at the same resolution, taken
from the same forward pass (same window, same per-frame timesteps, same CFG branch). Keys and values stay
the decoder's own. The fork hard-codes w = 1.0 (full replacement); its author reports w = 0.9.
Official code: YCmove/FIFO-Diffusion_public (b6226b0) `lvdm/modules/networks/openaimodel3d.py`,
`UNetModel.forward` (the decoder -> encoder block map `out2in`, the weight `vt`), and
`lvdm/modules/attention.py`, `CrossAttention.efficient_forward` (the blend). docs/consistency.md,
"Weighted Q-Cache".

`QueryCache` holds the options and the per-forward state. It is used through two hooks:

- `temporal_query(q, extra_options)`: our UNet's `patches["temporal_query"]` hook, called in every temporal
  attention right after `to_q` with `q` `[B*h*w, T, C]`;
- `spatial_query(q, key, extra_options)`: called from an attn1/attn2 replace of a spatial transformer with
  `q` `[B*T, h*w, C]` (after `to_q`); `key` names the transformer block.

Encoder blocks record their query, decoder blocks blend with it. A recorded query is dropped as soon as
its last decoder block has read it, so nothing outlives a forward pass (and `clear()` drops leftovers
after an interrupted one). State is per thread, so model copies running in parallel threads do not mix.

Step range: frames whose sigma (ComfyUI's `extra_options["sigmas"]`, one per frame, which is how FIFO's
diagonal denoising and stock samplers both pass it) lies in `[sigma_end, sigma_start]` are blended, the
others keep their own query, so a range works for whole clips and per frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

# The fork's `out2in` (openaimodel3d.py): decoder (output_blocks) index -> encoder (input_blocks) index.
# Decoder blocks 0-2 (the lowest resolution) have no attention; init_attn and the middle block are untouched.
FORK_DECODER_TO_ENCODER = {3: 8, 4: 7, 5: 7, 6: 5, 7: 4, 8: 4, 9: 2, 10: 1, 11: 1}

ATTENTIONS = ("attn1", "attn2")
ALL_SIGMAS = (float("inf"), 0.0)


def decoder_to_encoder(num_res_blocks: int, num_levels: int, attention_levels) -> dict[int, int]:
    """Decoder block -> encoder block at the same resolution, for a UNet of the VideoCrafter/SD layout.

    Encoder: block 0 is the input conv, then level l (0 = full resolution) has `num_res_blocks` blocks at
    `1 + l * (num_res_blocks + 1) + j`, followed by a downsampling block except at the last level.
    Decoder: level l has `num_res_blocks + 1` blocks at `(num_levels - 1 - l) * (num_res_blocks + 1) + i`.
    Decoder block i of a level reads encoder block `max(num_res_blocks - 1 - i, 0)` of that level: the
    mirror image (the block whose skip connection it receives), with the first encoder block standing in
    where the mirror is a downsampling block. For VideoCrafter (2 blocks, 4 levels, attention on levels
    0-2) this is exactly the fork's map. Only levels in `attention_levels` are mapped.
    """
    mapping = {}
    for level in attention_levels:
        if not 0 <= level < num_levels:
            raise ValueError(f"attention level {level} outside 0..{num_levels - 1}")
        for i in range(num_res_blocks + 1):
            decoder = (num_levels - 1 - level) * (num_res_blocks + 1) + i
            encoder = 1 + level * (num_res_blocks + 1) + max(num_res_blocks - 1 - i, 0)
            mapping[decoder] = encoder
    return dict(sorted(mapping.items()))


def decoder_level(decoder_block: int, num_res_blocks: int, num_levels: int) -> int:
    """The resolution level (0 = full) of a decoder block."""
    return num_levels - 1 - decoder_block // (num_res_blocks + 1)


def parse_levels(text: str, available) -> list[int]:
    """`"all"` or comma-separated level numbers -> sorted levels; raises ValueError naming the bad entry."""
    available = sorted(available)
    text = text.strip().lower()
    if text in ("", "all"):
        return available
    levels = set()
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"decoder_levels: '{part}' is not a level number (use e.g. 0,1,2 or all)")
        level = int(part)
        if level not in available:
            raise ValueError(f"decoder_levels: level {level} has no attention in this model; levels with "
                             f"attention are {available} (0 = full latent resolution)")
        levels.add(level)
    if not levels:
        raise ValueError("decoder_levels: no level given (use e.g. 0,1,2 or all)")
    return sorted(levels)


def blend(q_decoder: torch.Tensor, q_encoder: torch.Tensor, weight: float) -> torch.Tensor:
    """`(1 - w) q_decoder + w q_encoder`; w = 0 returns q_decoder itself, w = 1 q_encoder itself."""
    if q_decoder.shape != q_encoder.shape:
        raise ValueError(f"Q-cache: the encoder query {tuple(q_encoder.shape)} and the decoder query "
                         f"{tuple(q_decoder.shape)} differ in shape; the block map does not fit this model")
    if weight == 0.0:
        return q_decoder
    if weight == 1.0:
        return q_encoder.to(q_decoder.dtype)
    return (1.0 - weight) * q_decoder + weight * q_encoder.to(q_decoder.dtype)


def frame_sigmas(extra_options: dict, frames: int) -> torch.Tensor | None:
    """One sigma per frame of the forward pass (`[frames]`), or None when the caller gave none.

    ComfyUI passes the sigmas of one cond/uncond chunk (`[T]` for a clip, or `[W*T]` for batched windows);
    the forward pass holds that chunk once per CFG branch, so they are tiled to `frames`.
    """
    sigmas = extra_options.get("sigmas")
    if sigmas is None:
        return None
    sigmas = torch.as_tensor(sigmas).reshape(-1)
    if sigmas.numel() == frames:
        return sigmas
    if sigmas.numel() == 1:
        return sigmas.expand(frames)
    if frames % sigmas.numel() == 0:
        return sigmas.repeat(frames // sigmas.numel())
    raise ValueError(f"Q-cache: {sigmas.numel()} sigmas cannot be spread over the {frames} frames of this forward pass")


@dataclass(frozen=True)
class QueryCacheOptions:
    """What to blend, where and when.

    weight: w in `(1 - w) q_decoder + w q_encoder`, 0..1 (the fork: 1.0; its author's results: 0.9).
    attentions: subset of ("attn1", "attn2").
    temporal_map / spatial_map: decoder block -> encoder block for the temporal / spatial transformers
      (empty = that variant off).
    sigma_range: (sigma_start, sigma_end) with sigma_start >= sigma_end; frames with sigma outside are
      left alone. `ALL_SIGMAS` = every step.
    """
    weight: float = 0.9
    attentions: tuple = ("attn1",)
    temporal_map: tuple = ()
    spatial_map: tuple = ()
    sigma_range: tuple = ALL_SIGMAS

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"Q-cache weight {self.weight} outside 0..1")
        if not self.attentions or any(a not in ATTENTIONS for a in self.attentions):
            raise ValueError(f"Q-cache attentions {self.attentions}: choose from {ATTENTIONS}")
        start, end = self.sigma_range
        if start < end:
            raise ValueError(f"Q-cache sigma range ({start}, {end}): the start sigma must not be below the end sigma")

    @property
    def every_step(self) -> bool:
        return self.sigma_range[0] == float("inf") and self.sigma_range[1] <= 0.0


class QueryCache:
    """The per-forward query store and the blending, for the temporal and/or spatial variant.

    Copies (ComfyUI deep-copies model options when it clones a model) return the same object: the
    options are immutable and the state is transient, per thread and per forward pass.
    """

    def __init__(self, options: QueryCacheOptions):
        self.options = options
        self._local = threading.local()
        self._temporal = dict(options.temporal_map)
        self._spatial = dict(options.spatial_map)
        self._temporal_readers = _count_readers(self._temporal)
        self._spatial_readers = _count_readers(self._spatial)

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @property
    def _store(self) -> dict:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = {}
        return store

    def clear(self) -> None:
        """Drop anything recorded (after an interrupted forward pass); called on ComfyUI's cleanup."""
        self._local.store = {}

    def pending(self) -> int:
        """Number of recorded queries not yet read by every decoder block (0 between forward passes)."""
        return len(self._store)

    # --- the hooks -------------------------------------------------------------------------------------

    def temporal_query(self, q: torch.Tensor, extra_options: dict) -> torch.Tensor:
        """Temporal attention hook: `q` `[B*h*w, T, C]`."""
        attention = extra_options.get("attention")
        if attention not in self.options.attentions or not self._temporal:
            return q
        kind, index = extra_options.get("block", (None, None))
        frames = q.shape[1]
        videos = _videos(extra_options, frames)
        if kind == "input" and index in self._temporal_readers:
            mask = self._mask(extra_options, videos * frames)
            if mask is not False:
                self._record(("temporal", index, attention), q, self._temporal_readers[index])
            return q
        if kind == "output" and index in self._temporal:
            mask = self._mask(extra_options, videos * frames)
            if mask is False:
                return q
            cached = self._read(("temporal", self._temporal[index], attention), index)
            mixed = blend(q, cached, self.options.weight)
            if mask is True:
                return mixed
            # rows of q are (video, position); frames are dim 1
            keep = mask.reshape(videos, 1, frames, 1).to(q.device)
            return torch.where(keep, mixed.unflatten(0, (videos, -1)), q.unflatten(0, (videos, -1))).flatten(0, 1)
        return q

    def spatial_query(self, q: torch.Tensor, key: tuple, extra_options: dict) -> torch.Tensor:
        """Spatial attention hook: `q` `[B*T, h*w, C]`; key `(kind, block, depth_index, attention)`."""
        kind, index, depth, attention = key
        if attention not in self.options.attentions:
            return q
        if kind == "input" and index in self._spatial_readers:
            mask = self._mask(extra_options, q.shape[0])
            if mask is not False:
                self._record(("spatial", index, depth, attention), q, self._spatial_readers[index])
            return q
        if kind == "output" and index in self._spatial:
            mask = self._mask(extra_options, q.shape[0])
            if mask is False:
                return q
            cached = self._read(("spatial", self._spatial[index], depth, attention), index)
            mixed = blend(q, cached, self.options.weight)
            if mask is True:
                return mixed
            return torch.where(mask.reshape(-1, 1, 1).to(q.device), mixed, q)
        return q

    # --- internals -------------------------------------------------------------------------------------

    def _mask(self, extra_options: dict, frames: int):
        """True (every frame in the step range), False (none) or a bool tensor `[frames]`."""
        if self.options.every_step:
            return True
        sigmas = frame_sigmas(extra_options, frames)
        if sigmas is None:
            raise ValueError("Q-cache: a step range needs the sampler's sigmas (run the model through a ComfyUI "
                             "sampler), or use start_percent 0 and end_percent 1")
        start, end = self.options.sigma_range
        inside = (sigmas <= start) & (sigmas >= end)
        if bool(inside.all()):
            return True
        if not bool(inside.any()):
            return False
        return inside

    def _record(self, key, q, readers: int) -> None:
        self._store[key] = [q, readers]

    def _read(self, key, decoder_block: int) -> torch.Tensor:
        entry = self._store.get(key)
        if entry is None:
            raise RuntimeError(f"Q-cache: decoder block {decoder_block} found no query from encoder block {key[1]} "
                               f"in this forward pass (was that block's attention replaced by another patch?)")
        entry[1] -= 1
        if entry[1] <= 0:
            del self._store[key]
        return entry[0]


def _count_readers(mapping: dict) -> dict[int, int]:
    readers: dict[int, int] = {}
    for encoder in mapping.values():
        readers[encoder] = readers.get(encoder, 0) + 1
    return readers


def _videos(extra_options: dict, frames: int) -> int:
    timesteps = extra_options.get("timesteps")
    if timesteps is not None:
        return max(1, torch.as_tensor(timesteps).numel() // frames)
    return max(1, len(extra_options.get("cond_or_uncond", [0])))
