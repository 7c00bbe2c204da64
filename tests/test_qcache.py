"""Weighted Q-cache: the pure core, parity with the FIFO+ fork's UNet (qcache.safetensors), the node, and
composition with ComfyUI's sampler and other attention patches.

Fixtures: $FIFO_REFERENCE_DIR (default ../shared/reference/vc2_tiny): `qcache.safetensors` holds the fork's
UNet output for `stages.safetensors`' `unet.x`, `unet.context`, `unet.fps` and `unet.t_frames` / `unet.t_video`.
"""

import os

import pytest
import safetensors.torch
import torch

from fifo_infinity.attention import qcache

FORWARD_TOLERANCE = 1e-4

# case name in qcache.safetensors -> (weight, attention, transformers) of our node; None = no patch
CASES = {
    "none": None,
    "tt_attn1_w1.0": (1.0, "attn1", "temporal"),
    "tt_attn1_w0.9": (0.9, "attn1", "temporal"),
    "tt_attn2_w0.9": (0.9, "attn2", "temporal"),
    "st_attn1_w0.9": (0.9, "attn1", "spatial"),
}


def to_frames(video):
    return video[0].transpose(0, 1)


@pytest.fixture(scope="module")
def stages(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))


@pytest.fixture(scope="module")
def qcache_reference(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "qcache.safetensors"))


def run_unet(model, stages, mode, **extra_options):
    """One forward pass of a (patched) MODEL on the reference inputs, with the patcher's transformer options."""
    options = dict(model.model_options.get("transformer_options", {}), cond_or_uncond=[0], **extra_options)
    with torch.no_grad():
        return model.model.diffusion_model(to_frames(stages["unet.x"]), stages[f"unet.t_{mode}"].float(),
                                           context=stages["unet.context"], transformer_options=options,
                                           fps=stages["unet.fps"].float())


def patch(model, weight, attention="attn1", transformers="temporal", levels="all", start=0.0, end=1.0):
    from fifo_infinity.bridge.qcache import apply_query_cache
    return apply_query_cache(model, weight, attention, transformers, levels, start, end)


# --- pure core -------------------------------------------------------------------------------------------

def test_derived_block_map_is_the_forks():
    assert qcache.decoder_to_encoder(2, 4, [0, 1, 2]) == qcache.FORK_DECODER_TO_ENCODER
    # one level fewer with attention: only its three decoder blocks
    assert qcache.decoder_to_encoder(2, 4, [0]) == {9: 2, 10: 1, 11: 1}
    assert [qcache.decoder_level(d, 2, 4) for d in (3, 5, 6, 8, 9, 11)] == [2, 2, 1, 1, 0, 0]


def test_model_layout_gives_the_forks_map(tiny_model):
    from fifo_infinity.bridge.qcache import block_map, unet_layout
    layout = unet_layout(tiny_model[0])
    assert block_map(layout, "all") == qcache.FORK_DECODER_TO_ENCODER
    assert block_map(layout, "0, 2") == {3: 8, 4: 7, 5: 7, 9: 2, 10: 1, 11: 1}


def test_parse_levels_errors():
    assert qcache.parse_levels("all", [0, 1, 2]) == [0, 1, 2]
    assert qcache.parse_levels("2,0", [0, 1, 2]) == [0, 2]
    with pytest.raises(ValueError, match="level 3 has no attention"):
        qcache.parse_levels("3", [0, 1, 2])
    with pytest.raises(ValueError, match="'x' is not a level number"):
        qcache.parse_levels("0,x", [0, 1, 2])


def test_blend_per_frame_range_and_state_is_freed():
    """Temporal q `[B*h*w, T, C]`: frames whose sigma is in range are blended, the others keep their query."""
    videos, positions, frames, width = 2, 3, 4, 5
    options = qcache.QueryCacheOptions(weight=0.25, attentions=("attn1",), temporal_map=((9, 2), (10, 1)),
                                       sigma_range=(5.0, 1.0))
    cache = qcache.QueryCache(options)
    sigmas = torch.tensor([9.0, 5.0, 3.0, 0.5])                   # one clip's frames; in range: frames 1, 2
    common = {"attention": "attn1", "timesteps": torch.zeros(videos * frames), "sigmas": sigmas}
    q_enc = torch.randn(videos * positions, frames, width)
    q_dec = torch.randn(videos * positions, frames, width)
    assert cache.temporal_query(q_enc, dict(common, block=("input", 2))) is q_enc
    assert cache.pending() == 1
    out = cache.temporal_query(q_dec, dict(common, block=("output", 9)))
    assert cache.pending() == 0                                    # its only reader has read it
    inside = torch.tensor([False, True, True, False])
    expected = torch.where(inside.reshape(1, frames, 1), 0.75 * q_dec + 0.25 * q_enc, q_dec)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(out[:, ~inside], q_dec[:, ~inside])
    # a decoder block whose source was never recorded in this pass is an error, not a silent no-op
    with pytest.raises(RuntimeError, match="found no query from encoder block 1"):
        cache.temporal_query(q_dec, dict(common, block=("output", 10)))
    # attn2 is not selected: untouched
    assert cache.temporal_query(q_dec, dict(common, attention="attn2", block=("output", 9))) is q_dec


def test_blend_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        qcache.blend(torch.zeros(2, 3), torch.zeros(3, 3), 0.5)


def test_options_are_checked():
    with pytest.raises(ValueError, match="outside 0..1"):
        qcache.QueryCacheOptions(weight=1.5)
    with pytest.raises(ValueError, match="start sigma"):
        qcache.QueryCacheOptions(sigma_range=(1.0, 2.0))


# --- parity with the fork ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["frames", "video"])
@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_the_forks_unet(tiny_model, stages, qcache_reference, mode, case):
    model = tiny_model[0]
    if CASES[case] is not None:
        weight, attention, transformers = CASES[case]
        model, cache = patch(model, weight, attention, transformers)
    eps = run_unet(model, stages, mode)
    reference = to_frames(qcache_reference[f"qcache.t_{mode}.{case}"])
    error = (eps - reference).abs().max().item()
    print(f"Q-cache parity t_{mode} {case}: max abs error {error:.3g} (reference max {reference.abs().max():.3g})")
    assert error < FORWARD_TOLERANCE
    if CASES[case] is not None:
        assert cache.pending() == 0
        # the case really changes the output (so the parity is not the unpatched output's)
        assert (to_frames(qcache_reference[f"qcache.t_{mode}.none"]) - reference).abs().max() > 100 * FORWARD_TOLERANCE


@pytest.mark.parametrize("transformers", ["temporal", "spatial", "temporal + spatial"])
def test_weight_zero_leaves_the_output_unchanged_bit_for_bit(tiny_model, stages, transformers):
    plain = run_unet(tiny_model[0], stages, "frames")
    model, _ = patch(tiny_model[0], 0.0, "both", transformers)
    assert torch.equal(run_unet(model, stages, "frames"), plain)


def test_step_range_by_frame_sigma(tiny_model, stages):
    """Frames outside [end, start] (in sigma) are left alone; inside, the full blend."""
    model = tiny_model[0]
    sampling = model.get_model_object("model_sampling")
    sigmas = sampling.sigma(stages["unet.t_video"].float()).expand(stages["unet.t_frames"].numel())
    plain = run_unet(model, stages, "video", sigmas=sigmas)
    full = run_unet(patch(model, 0.9)[0], stages, "video", sigmas=sigmas)
    t = float(stages["unet.t_video"])
    percent = 1.0 - t / 999.0                                       # this step's place in the schedule
    outside, _ = patch(model, 0.9, start=min(1.0, percent + 0.05), end=1.0)
    inside, _ = patch(model, 0.9, start=max(0.0, percent - 0.05), end=min(1.0, percent + 0.05))
    assert torch.equal(run_unet(outside, stages, "video", sigmas=sigmas), plain)
    assert torch.equal(run_unet(inside, stages, "video", sigmas=sigmas), full)
    assert not torch.allclose(full, plain, atol=1e-3)
    with pytest.raises(ValueError, match="needs the sampler's sigmas"):
        run_unet(inside, stages, "video")


def test_an_existing_attention_replace_is_kept(tiny_model, stages):
    """Another pack's attn1 replace on a decoder block still runs, with the blended query."""
    from comfy.ldm.modules.attention import optimized_attention
    calls = []

    def halve(q, k, v, extra_options):
        calls.append(extra_options["block"])
        return optimized_attention(q, k, v, extra_options["n_heads"]) * 0.5

    other = tiny_model[0].clone()
    other.set_model_attn1_replace(halve, "output", 9, 0)
    with_other = run_unet(other, stages, "frames")
    both, _ = patch(other, 0.0, "attn1", "spatial")
    assert torch.equal(run_unet(both, stages, "frames"), with_other)
    assert calls == [("output", 9), ("output", 9)]
    assert not torch.allclose(with_other, run_unet(tiny_model[0], stages, "frames"), atol=1e-4)


def test_patching_clones_and_cleanup_drops_leftovers(tiny_model, stages):
    model = tiny_model[0]
    patched, cache = patch(model, 0.9, "attn1", "temporal + spatial")
    assert patched is not model
    assert "temporal_query" not in model.model_options.get("transformer_options", {}).get("patches", {})
    # an interrupted forward pass leaves recorded queries; ComfyUI's cleanup callback drops them
    cache.temporal_query(torch.zeros(4, 16, 32), {"attention": "attn1", "block": ("input", 1),
                                                  "timesteps": torch.zeros(16)})
    assert cache.pending() == 1
    patched.cleanup()
    assert cache.pending() == 0


def test_node_refuses_bad_inputs(host, tiny_model):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityWeightedQCache"]
    assert node.validate_inputs(decoder_levels="all", start_percent=0.0, end_percent=1.0) is True
    assert "not a level number" in node.validate_inputs(decoder_levels="top", start_percent=0.0, end_percent=1.0)
    assert "must not be after" in node.validate_inputs(decoder_levels="all", start_percent=0.6, end_percent=0.5)
    assert "start_percent = -0.1 is outside its range: use a number from 0.0 to 1.0" in node.validate_inputs(
        decoder_levels="all", start_percent=-0.1, end_percent=0.5)
    assert "weight = nan is not a finite number" in node.validate_inputs(weight=float("nan"))
    with pytest.raises(ValueError, match="Weighted Q-Cache: decoder_levels: level 3 has no attention"):
        node.execute(tiny_model[0], 0.9, "attn1", "temporal", "3", 0.0, 1.0)


# --- composition with the stock sampler --------------------------------------------------------------------

def ksampler(host, model, stages, steps=2, seed=7):
    """The host's KSampler node on the reference clip size; with 2 "normal" steps the model is evaluated at
    t = 999 and t = 0 only."""
    positive = [[stages["text.embeddings"][1:2], {}]]
    negative = [[stages["text.embeddings"][0:1], {}]]
    frames, _, h, w = to_frames(stages["unet.x"]).shape
    latent = {"samples": torch.zeros(frames, 4, h, w)}
    node = host.NODE_CLASS_MAPPINGS["KSampler"]()
    return getattr(node, node.FUNCTION)(model, seed, steps, 7.5, "euler", "normal", positive, negative, latent)[0]["samples"]


def test_composes_with_the_stock_ksampler(host, tiny_model, stages):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityWeightedQCache"]
    plain = ksampler(host, tiny_model[0], stages)
    patched = node.execute(tiny_model[0], 0.9, "both", "temporal + spatial", "all", 0.0, 1.0).result[0]
    out = ksampler(host, patched, stages)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, plain, atol=1e-3)
    # a step range between the two evaluated steps: the sampler's run is exactly the unpatched one
    between = node.execute(tiny_model[0], 0.9, "both", "temporal + spatial", "all", 0.2, 0.8).result[0]
    assert torch.equal(ksampler(host, between, stages), plain)
