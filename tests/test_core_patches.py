"""Core's model patches on our MODEL (stock KSampler), and our patch points as core's UNet runs them.

Each core node is applied to the tiny reference model and a 16-frame video is sampled with the stock KSampler
(euler, 2 steps, CFG 4, so the uncond branch that SAG and PAG need is computed). Where a patch is the identity at
some setting the output equals the unpatched run (bit for bit, except FreeU's FFT round trip, which is within
float rounding); otherwise it differs. Core's UNet conventions we follow: comfy/ldm/modules/diffusionmodules/
openaimodel.py `UNetModel._forward` (docs/videocrafter2.md, "The UNet in ComfyUI").
"""

import asyncio
import os

import pytest
import safetensors.torch
import torch



def run_node(host, name, **inputs):
    """Output 0 of core node `name`, V1 or V3, as ComfyUI's executor would get it."""
    cls = host.NODE_CLASS_MAPPINGS[name]
    if hasattr(cls, "define_schema"):                       # V3 (comfy_api io.ComfyNode)
        out = cls.execute(**inputs)
        if asyncio.iscoroutine(out):
            out = asyncio.run(out)
        return out.result[0] if hasattr(out, "result") else out[0]
    return getattr(cls(), cls.FUNCTION)(**inputs)[0]


@pytest.fixture(scope="module")
def conds(reference_dir):
    embeddings = safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))["text.embeddings"]
    return [[embeddings[1:2], {}]], [[embeddings[0:1], {}]]


@pytest.fixture(scope="module")
def frames(manifest):
    """The model's clip length (the official `temporal_length`, 16 for VideoCrafter2): a user's first run."""
    return manifest["unet"]["temporal_length"]


@pytest.fixture(scope="module")
def latent_side(tiny_model):
    """A square latent side (in latent pixels) whose middle block is 2x2: SAG needs a middle map it can reshape."""
    levels = len(tiny_model[0].model.model_config.unet_config["channel_mult"])
    return 2 ** (levels - 1) * 2


def sample(host, model, conds, side, frames, seed=3):
    latent = {"samples": torch.zeros(frames, 4, side, side)}
    return host.NODE_CLASS_MAPPINGS["KSampler"]().sample(model, seed, 2, 4.0, "euler", "normal", conds[0], conds[1],
                                                         latent, 1.0)[0]["samples"]


@pytest.fixture(scope="module")
def plain(host, tiny_model, conds, latent_side, frames):
    return sample(host, tiny_model[0], conds, latent_side, frames)


def assert_differs(out, plain):
    assert out.shape == plain.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, plain, atol=1e-5), "the patch did not change the video"


def test_hypertile(host, tiny_model, conds, latent_side, plain, frames):
    """HyperTile reads `original_shape`: tiles larger than the latent leave it whole (identity); 32-pixel tiles
    split the first level's self-attention (4 latent pixels a tile) and change the video."""
    whole = run_node(host, "HyperTile", model=tiny_model[0], tile_size=8 * latent_side, swap_size=1, max_depth=0,
                     scale_depth=False)
    assert torch.equal(sample(host, whole, conds, latent_side, frames), plain)
    tiled = run_node(host, "HyperTile", model=tiny_model[0], tile_size=32, swap_size=1, max_depth=0, scale_depth=False)
    assert_differs(sample(host, tiled, conds, latent_side, frames), plain)


def test_tome(host, tiny_model, conds, latent_side, plain, frames):
    """TomePatchModel (token merging, reads `original_shape`): ratio 0 is the identity, 0.5 changes the video."""
    assert torch.equal(sample(host, run_node(host, "TomePatchModel", model=tiny_model[0], ratio=0.0), conds,
                              latent_side, frames), plain)
    merged = run_node(host, "TomePatchModel", model=tiny_model[0], ratio=0.5)
    assert_differs(sample(host, merged, conds, latent_side, frames), plain)


def test_freeu_v2(host, tiny_model, conds, latent_side, plain, frames):
    """FreeU_V2 (output_block_patch on the skips whose width is 2 or 4 x model_channels): scales 1 give the
    unpatched video up to the FFT round trip of its skip filter; its defaults change it."""
    identity = run_node(host, "FreeU_V2", model=tiny_model[0], b1=1.0, b2=1.0, s1=1.0, s2=1.0)
    out = sample(host, identity, conds, latent_side, frames)
    assert torch.allclose(out, plain, rtol=1e-5, atol=1e-5 * plain.abs().max().item())
    assert_differs(sample(host, run_node(host, "FreeU_V2", model=tiny_model[0], b1=1.3, b2=1.4, s1=0.9, s2=0.2),
                          conds, latent_side, frames), plain)


def test_perturbed_attention_guidance(host, tiny_model, conds, latent_side, plain, frames):
    """PAG (replaces the middle block's attn1 in an extra cond pass): scale 0 is the identity, 3 changes it."""
    model = tiny_model[0]
    assert torch.equal(sample(host, run_node(host, "PerturbedAttentionGuidance", model=model, scale=0.0), conds,
                              latent_side, frames), plain)
    assert_differs(sample(host, run_node(host, "PerturbedAttentionGuidance", model=model, scale=3.0), conds,
                          latent_side, frames), plain)


def test_self_attention_guidance(host, tiny_model, conds, latent_side, plain, frames):
    """SAG (records the middle block's attn1 map, blurs, re-runs the uncond): changes the video, finite."""
    assert_differs(sample(host, run_node(host, "SelfAttentionGuidance", model=tiny_model[0], scale=0.8,
                                         blur_sigma=2.0), conds, latent_side, frames), plain)


def attention_count(unet):
    """Attention products in one UNet call: attn1 + attn2 of every spatial and every temporal block."""
    from comfy.ldm.modules.attention import BasicTransformerBlock
    from fifo_infinity.videocrafter.unet import TemporalTransformerBlock
    return 2 * sum(isinstance(m, (BasicTransformerBlock, TemporalTransformerBlock)) for m in unet.modules())


def count_unet_calls(model):
    """(clone of `model` counting its UNet calls, the list the counts go to)."""
    import comfy.patcher_extension
    calls = []

    def wrapper(executor, *args, **kwargs):
        calls.append(args[0].shape[0])
        return executor(*args, **kwargs)
    clone = model.clone()
    clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "fifo_infinity_test", wrapper)
    return clone, calls


def test_attention_override_reaches_every_attention(host, tiny_model, conds, latent_side, plain, frames):
    """The host's attention override (`transformer_options["optimized_attention_override"]`, installed by the
    ModelAttentionBackend node on v0.33; on v0.3.75, which has the mechanism but not the node, set directly)
    picks the backend of every attention call, the temporal ones included: counted over a whole sampling."""
    if "ModelAttentionBackend" in host.NODE_CLASS_MAPPINGS:
        model = run_node(host, "ModelAttentionBackend", model=tiny_model[0], attention="pytorch attention")
        override = model.model_options["transformer_options"]["optimized_attention_override"]
    else:
        from comfy.ldm.modules.attention import attention_pytorch
        model = tiny_model[0].clone()

        def override(function, *args, **kwargs):
            return attention_pytorch(*args, **kwargs)
    seen = []

    def counting(function, *args, **kwargs):
        seen.append(args[0].shape)
        return override(function, *args, **kwargs)
    model.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = counting
    model, calls = count_unet_calls(model)
    out = sample(host, model, conds, latent_side, frames)
    assert calls, "the UNet never ran"
    # attn1 + attn2 of every spatial AND every temporal block, in every UNet call (without the temporal ones the
    # count would be short by 2 x the temporal blocks)
    assert len(seen) == len(calls) * attention_count(tiny_model[0].model.diffusion_model)
    assert torch.allclose(out, plain, rtol=1e-4, atol=1e-4 * plain.abs().max().item())


def test_own_attn1_attn2_and_temporal_patches(host, tiny_model, conds, latent_side, plain, frames):
    """Patches of our own at ComfyUI's attn1/attn2 patch points and our temporal-query point: called in every
    block of every UNet pass; identity patches leave the video bit for bit, a scaled query changes it."""
    unet = tiny_model[0].model.diffusion_model
    from comfy.ldm.modules.attention import BasicTransformerBlock
    from fifo_infinity.videocrafter.unet import TemporalTransformerBlock
    spatial = sum(isinstance(m, BasicTransformerBlock) for m in unet.modules())
    temporal = 2 * sum(isinstance(m, TemporalTransformerBlock) for m in unet.modules())
    counts = {"attn1": 0, "attn2": 0, "temporal": 0}

    def patched(scale):
        model = tiny_model[0].clone()

        def attention_patch(name):
            def patch(q, k, v, extra_options):
                counts[name] += 1
                assert extra_options["original_shape"][0] == q.shape[0] and "transformer_index" in extra_options
                return q * scale, k, v
            return patch

        def temporal_query(q, extra_options):
            counts["temporal"] += 1
            assert extra_options["original_shape"][1:] == [4, latent_side, latent_side]
            return q * scale
        model.set_model_attn1_patch(attention_patch("attn1"))
        model.set_model_attn2_patch(attention_patch("attn2"))
        model.set_model_patch(temporal_query, "temporal_query")
        return count_unet_calls(model)

    model, calls = patched(1.0)
    assert torch.equal(sample(host, model, conds, latent_side, frames), plain)
    assert counts == {"attn1": spatial * len(calls), "attn2": spatial * len(calls), "temporal": temporal * len(calls)}
    model, _ = patched(1.5)
    assert_differs(sample(host, model, conds, latent_side, frames), plain)


def test_unet_runs_core_patch_points_and_control(host, tiny_model, latent_side, frames):
    """The UNet runs `emb_patch`, `input_block_patch(_after_skip)`, `middle_block_after_patch`,
    `output_block_patch` and `forward_timestep_embed_patch` as core's UNet does, sets `original_shape` and
    `transformer_index`, and adds ControlNet residuals (input / middle / output lists): zero residuals and
    identity patches change nothing bit for bit; a residual on the middle block changes the output."""
    from fifo_infinity.videocrafter.unet import TemporalTransformer
    unet = tiny_model[0].model.diffusion_model
    config = tiny_model[0].model.model_config.unet_config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(frames, 4, latent_side, latent_side, generator=generator)
    t = torch.full((frames,), 500.0)
    context = torch.randn(1, 77, config["context_dim"], generator=generator)
    seen = []

    def note(name):
        def patch(*args):
            seen.append(name)
            return args[0] if len(args) < 3 or name != "output" else (args[0], args[1])
        return patch

    def middle_after(arguments):
        seen.append("middle")
        assert set(arguments) >= {"h", "x", "emb", "context", "timesteps", "transformer_options"}
        return {"h": arguments["h"]}

    def temporal_layer(layer, h, emb, context, transformer_options, output_shape, time_context, frames, indicator):
        seen.append("embed")
        return layer(h, frames, transformer_options)
    options = {"patches": {"emb_patch": [note("emb")], "input_block_patch": [note("input")],
                           "input_block_patch_after_skip": [note("after_skip")],
                           "middle_block_after_patch": [middle_after], "output_block_patch": [note("output")],
                           "forward_timestep_embed_patch": [(TemporalTransformer, temporal_layer)]},
               "cond_or_uncond": [0]}
    with torch.no_grad():
        plain = unet(x, t, context=context, transformer_options={"cond_or_uncond": [0]})
        patched = unet(x, t, context=context, transformer_options=options)
        blocks = len(unet.input_blocks)
        assert torch.equal(patched, plain)
        temporal_layers = sum(isinstance(m, TemporalTransformer) for m in unet.modules())
        assert seen.count("emb") == 1 and seen.count("middle") == 1 and seen.count("embed") == temporal_layers
        assert seen.count("input") == blocks and seen.count("after_skip") == blocks
        assert seen.count("output") == len(unet.output_blocks)

        def residuals(scale):
            shapes = []
            def record(h, transformer_options):
                shapes.append(h.shape)
                return h
            unet(x, t, context=context, transformer_options={"cond_or_uncond": [0],
                                                              "patches": {"input_block_patch": [record]}})
            inputs = [torch.zeros(s) for s in shapes]
            middle = torch.full(shapes[-1], scale)
            return {"input": inputs[::-1], "middle": [middle], "output": inputs[:]}
        assert torch.equal(unet(x, t, context=context, control=residuals(0.0),
                                transformer_options={"cond_or_uncond": [0]}), plain)
        moved = unet(x, t, context=context, control=residuals(0.5), transformer_options={"cond_or_uncond": [0]})
    assert not torch.allclose(moved, plain, atol=1e-5)
