"""Putting the weighted Q-cache (`attention/qcache.py`) on a VideoCrafter MODEL through ComfyUI's patch points.

- Temporal transformers: our UNet's `transformer_options["patches"]["temporal_query"]` hook (q after `to_q`).
- Spatial transformers (ComfyUI's own blocks): an attn1/attn2 *replace* on each encoder block that is a
  source (it records q and runs the usual attention) and on each decoder block that is a target (it blends q
  first). ComfyUI's attn1/attn2 *patches* only see the hidden states before `to_q`, and the encoder's and
  decoder's `to_q` differ, so the query can only be reached in a replace. A replace already on the same
  block (another pack's) is kept and called with the blended query.
- On a VideoCrafter1 image-to-video model, the spatial attn2 also adds the image attention. A replace only
  receives `to_k(context)`, so an attn2 patch passes the raw context (text + image tokens) to the replace
  through the block's `extra_options`; the context itself is left unchanged for every other block.

The patched model is a clone; the cache's leftovers are dropped on ComfyUI's cleanup callback.
"""

from __future__ import annotations

import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention

from ..attention.qcache import (ALL_SIGMAS, QueryCache, QueryCacheOptions, decoder_level, decoder_to_encoder,
                               parse_levels)
from ..videocrafter.image_attention import ImageCrossAttention
from ..videocrafter.unet import supports_patch_points

VARIANTS = ("temporal", "spatial", "temporal + spatial")
ATTENTION_CHOICES = {"attn1": ("attn1",), "attn2": ("attn2",), "both": ("attn1", "attn2")}
CLEANUP_KEY = "fifo_infinity_qcache"
IMAGE_CONTEXT_KEY = "videocrafter_image_context"


def unet_layout(model) -> dict:
    """Block layout of a VideoCrafter MODEL: res blocks per level, levels, levels with attention, flags."""
    unet = getattr(model.model, "diffusion_model", None)
    config = getattr(model.model, "model_config", None)
    if not supports_patch_points(unet, "temporal_query") or config is None:
        raise ValueError("Weighted Q-Cache needs a VideoCrafter MODEL from the VideoCrafter2 Checkpoint Loader")
    unet_config = config.unet_config
    levels = len(unet_config["channel_mult"])
    attention_levels = [level for level in range(levels) if 2 ** level in unet_config["attention_resolutions"]]
    return {"num_res_blocks": unet_config["num_res_blocks"], "num_levels": levels, "attention_levels": attention_levels,
            "temporal_attention": unet_config.get("temporal_attention", True),
            "depth": unet_config.get("transformer_depth", 1), "unet": unet}


def block_map(layout: dict, levels_text: str) -> dict[int, int]:
    """The decoder -> encoder map restricted to the chosen decoder levels."""
    levels = parse_levels(levels_text, layout["attention_levels"])
    mapping = decoder_to_encoder(layout["num_res_blocks"], layout["num_levels"], layout["attention_levels"])
    return {d: e for d, e in mapping.items()
            if decoder_level(d, layout["num_res_blocks"], layout["num_levels"]) in levels}


def sigma_range(model, start_percent: float, end_percent: float) -> tuple[float, float]:
    """(sigma_start, sigma_end) of a start/end percent of the schedule, ComfyUI's convention."""
    if start_percent > end_percent:
        raise ValueError(f"start_percent {start_percent} is after end_percent {end_percent}")
    sampling = model.get_model_object("model_sampling")
    start = ALL_SIGMAS[0] if start_percent <= 0.0 else float(sampling.percent_to_sigma(start_percent))
    end = ALL_SIGMAS[1] if end_percent >= 1.0 else float(sampling.percent_to_sigma(end_percent))
    return start, end


def _spatial_modules(unet, kind: str, index: int):
    blocks = unet.input_blocks if kind == "input" else unet.output_blocks
    for layer in blocks[index]:
        if isinstance(layer, SpatialTransformer):
            return layer.transformer_blocks
    return []


def _existing_replace(model, attention: str, key: tuple):
    replaces = model.model_options.get("transformer_options", {}).get("patches_replace", {}).get(attention, {})
    return replaces.get(key, replaces.get(key[:2]))


def _attend(q, k, v, extra_options, previous):
    if previous is not None:
        return previous(q, k, v, extra_options)
    return optimized_attention(q, k, v, extra_options["n_heads"], attn_precision=extra_options.get("attn_precision"),
                               transformer_options=extra_options)


def _make_replace(cache: QueryCache, key: tuple, previous, image_module: ImageCrossAttention | None):
    """fn(q, k, v, extra_options) for one spatial attention of one transformer block."""
    if image_module is None:
        def replace(q, k, v, extra_options):
            return _attend(cache.spatial_query(q, key, extra_options), k, v, extra_options, previous)
        return replace

    def replace_with_image(q, k, v, extra_options):
        q = cache.spatial_query(q, key, extra_options)
        raw = extra_options.get(IMAGE_CONTEXT_KEY)
        if raw is None:
            raise RuntimeError("Q-cache: the image-context patch did not run before the attn2 replace")
        context, value = raw
        text, image = image_module.split(context)
        if image is None:
            return _attend(q, k, v, extra_options, previous)
        _, image_value = image_module.split(value)
        tokens = text.shape[1]
        out = _attend(q, k[:, :tokens], v[:, :tokens], extra_options, previous)
        return out + image_module.image_attention(q, image, image_value, extra_options)
    return replace_with_image


def _pass_image_context(n, context, value, extra_options):
    """attn2 patch: hands the raw (text + image) context to the Q-cache's attn2 replace; changes nothing."""
    extra_options[IMAGE_CONTEXT_KEY] = (context, value if value is not None else context)
    return n, context, value


def apply_query_cache(model, weight: float, attention: str = "attn1", variant: str = "temporal",
                      decoder_levels: str = "all", start_percent: float = 0.0, end_percent: float = 1.0):
    """A clone of `model` with the weighted Q-cache. Raises ValueError for options the model cannot take."""
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention '{attention}': choose from {list(ATTENTION_CHOICES)}")
    if variant not in VARIANTS:
        raise ValueError(f"transformers '{variant}': choose from {list(VARIANTS)}")
    layout = unet_layout(model)
    mapping = block_map(layout, decoder_levels)
    temporal = "temporal" in variant
    spatial = "spatial" in variant
    if temporal and not layout["temporal_attention"]:
        raise ValueError("this model has no temporal transformers; choose the spatial variant")
    if temporal and layout["depth"] != 1:
        raise ValueError(f"the temporal variant supports temporal transformers of depth 1 (VideoCrafter1/2); this "
                         f"model's have depth {layout['depth']}; choose the spatial variant")
    attentions = ATTENTION_CHOICES[attention]
    cache = QueryCache(QueryCacheOptions(
        weight=float(weight), attentions=attentions,
        temporal_map=tuple(mapping.items()) if temporal else (),
        spatial_map=tuple(mapping.items()) if spatial else (),
        sigma_range=sigma_range(model, start_percent, end_percent)))

    patched = model.clone()
    if temporal:
        def temporal_query(q, extra_options):
            return cache.temporal_query(q, extra_options)
        patched.set_model_patch(temporal_query, "temporal_query")
    if spatial:
        unet = layout["unet"]
        blocks = [("input", e) for e in sorted(set(mapping.values()))] + [("output", d) for d in sorted(mapping)]
        needs_image_context = False
        for name in attentions:
            for kind, index in blocks:
                for depth, block in enumerate(_spatial_modules(unet, kind, index)):
                    image_module = block.attn2 if name == "attn2" and isinstance(block.attn2, ImageCrossAttention) else None
                    needs_image_context |= image_module is not None
                    replace = _make_replace(cache, (kind, index, depth, name), _existing_replace(patched, name, (kind, index, depth)),
                                            image_module)
                    patched.set_model_patch_replace(replace, name, kind, index, depth)
        if needs_image_context:
            patched.set_model_attn2_patch(_pass_image_context)
    patched.add_callback_with_key(comfy.patcher_extension.CallbacksMP.ON_CLEANUP, CLEANUP_KEY, lambda *_args, **_kwargs: cache.clear())
    return patched, cache
