"""Our VideoCrafter2 model inside a real ComfyUI: parity with the official code's outputs (`test_parity_*`),
and what the parity tests cannot see (batching, the rescale switch, attention patches).

Fixtures: $FIFO_REFERENCE_DIR (default ../shared/reference/vc2_tiny), sizes from its manifest.json.
Tolerances (docs/videocrafter2.md, "Parity with the official code"): forward passes 1e-4 absolute in fp32; full
samplings 1e-4 x max|reference|.
"""

import os

import pytest
import safetensors.torch
import torch

FORWARD_TOLERANCE = 1e-4
SAMPLING_RELATIVE_TOLERANCE = 1e-4


def to_frames(video):
    """Official `[1, C, T, h, w]` -> frames as batch `[T, C, h, w]`."""
    return video[0].transpose(0, 1)


@pytest.fixture(scope="module")
def stages(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))


@pytest.fixture(scope="module")
def sampling_reference(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "fifo.safetensors"))


def test_parity_config_inferred_from_state_dict(tiny_model, manifest):
    from fifo_infinity.videocrafter.convert import infer_unet_config
    config = infer_unet_config(tiny_model[3]["unet"])
    expected = manifest["unet"]
    for key in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "num_head_channels",
                "context_dim", "use_linear", "temporal_conv", "temporal_attention", "fps_cond"):
        assert config[key] == expected[key], key
    assert config["channel_mult"] == list(expected["channel_mult"])
    assert sorted(config["attention_resolutions"]) == sorted(expected["attention_resolutions"])
    assert config["addition_attention"] == expected["addition_attention"]
    assert config["transformer_depth"] == expected["transformer_depth"]


def test_parity_text_embeddings(tiny_model, stages, manifest):
    clip = tiny_model[1]
    for index, prompt in enumerate(manifest["prompts"]):
        tokens = clip.tokenize(prompt)
        ids = torch.tensor([token for token, _ in tokens["h"][0]])
        assert torch.equal(ids, stages["text.tokens"][index]), prompt
        embedding = clip.encode_from_tokens(tokens)
        error = (embedding[0] - stages["text.embeddings"][index]).abs().max().item()
        print(f"text embedding {index}: max abs error {error:.3g}")
        assert error < FORWARD_TOLERANCE


@pytest.mark.parametrize("mode", ["video", "frames"])
def test_parity_unet_forward(tiny_model, stages, mode):
    """One timestep per video and one per frame (FIFO's diagonal mode), called as ComfyUI calls the UNet."""
    unet = tiny_model[0].model.diffusion_model
    x = to_frames(stages["unet.x"])
    with torch.no_grad():
        eps = unet(x, stages[f"unet.t_{mode}"].float(), context=stages["unet.context"],
                   transformer_options={"cond_or_uncond": [0]}, fps=stages["unet.fps"].float())
    reference = to_frames(stages[f"unet.eps_{mode}"])
    error = (eps - reference).abs().max().item()
    print(f"UNet eps ({mode}): max abs error {error:.3g} (reference max {reference.abs().max():.3g})")
    assert error < FORWARD_TOLERANCE


def test_unet_batched_cond_uncond(tiny_model, stages):
    """Two videos in one call (ComfyUI batches cond and uncond) equal two separate calls."""
    unet = tiny_model[0].model.diffusion_model
    x = to_frames(stages["unet.x"])
    t = stages["unet.t_frames"].float()
    context = stages["unet.context"]
    with torch.no_grad():
        single = unet(x, t, context=context, transformer_options={"cond_or_uncond": [0]})
        double = unet(torch.cat([x, x.flip(0)]), torch.cat([t, t]), context=torch.cat([context, context]),
                      transformer_options={"cond_or_uncond": [1, 0]})
    assert (double[: x.shape[0]] - single).abs().max().item() < 1e-5
    assert not torch.allclose(double[x.shape[0]:], single, atol=1e-3)


def test_parity_vae_decode(tiny_model, stages, manifest):
    vae = tiny_model[2]
    decoded = vae.decode(to_frames(stages["vae.z"]) / manifest["scale_factor"])     # [T, H, W, 3] in 0..1, clamped
    reference = ((to_frames(stages["vae.decoded"]).permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1)
    error = (decoded.reshape(reference.shape) - reference).abs().max().item()
    print(f"VAE decode: max abs error {error:.3g}")
    assert error < FORWARD_TOLERANCE


@pytest.mark.usefixtures("host")          # videocrafter.model_base imports comfy
def test_parity_schedule_buffers(stages):
    from fifo_infinity.videocrafter.model_base import alphas_cumprod_float32, rescale_table
    assert torch.equal(alphas_cumprod_float32(), stages["schedule.alphas_cumprod"])
    assert torch.equal(rescale_table(), stages["schedule.scale_arr"])


class FixedNoise:
    """A ComfyUI NOISE object returning given noise (the official x_T)."""
    seed = 0

    def __init__(self, noise):
        self.noise = noise

    def generate_noise(self, latent):
        return self.noise.clone()


def base_ddim_through_comfyui(host, model, stages, sampling_reference, manifest):
    """ComfyUI's SamplerCustomAdvanced + euler on our sigmas of the official grid, from the fixture's x_T:
    the VP latents `[f, 4, h, w]` to compare with `base.eta0.latents`."""
    sampling = model.get_model_object("model_sampling")
    steps = manifest["fifo"]["ddim_steps"]
    grid = torch.linspace(0, 999, steps).round().long()
    sigmas = sampling.sigmas[grid].flip(0)
    x_T = to_frames(sampling_reference["base.eta0.x_T"])
    embeddings = stages["text.embeddings"]
    positive = [[embeddings[1:2], {"fps": manifest["fifo"]["fps"]}]]
    negative = [[embeddings[0:1], {"fps": manifest["fifo"]["fps"]}]]

    mappings = host.NODE_CLASS_MAPPINGS
    guider = mappings["CFGGuider"].execute(model, positive, negative, manifest["fifo"]["cfg_scale"]).result[0]
    sampler = mappings["KSamplerSelect"].execute("euler").result[0]
    latent = {"samples": torch.zeros_like(x_T)}
    out = mappings["SamplerCustomAdvanced"].execute(FixedNoise(x_T), guider, sampler, sigmas, latent).result[0]
    model_space = model.model.process_latent_in(out["samples"])                          # X at sigma~(tau_0)
    return model_space * sampling.scales[0] * sampling.alphas_cumprod[0].sqrt()


def test_parity_base_ddim_eta0_through_comfyui_sampler(host, tiny_model, stages, sampling_reference, manifest):
    """VideoCrafter2's own 64-step DDIM (eta 0, rescale) == ComfyUI's SamplerCustomAdvanced + euler on our sigmas.

    Sigmas: sigma~(tau_{S-1}) ... sigma~(tau_0) on the official grid linspace(0, 999, S).round(); the final
    VP latent is s_0 sqrt(a_0) X (docs/videocrafter2.md, "The rescaled schedule").
    """
    latents = base_ddim_through_comfyui(host, tiny_model[0], stages, sampling_reference, manifest)
    reference = to_frames(sampling_reference["base.eta0.latents"])
    error = (latents - reference).abs().max().item()
    largest = reference.abs().max().item()
    print(f"base DDIM eta 0 via SamplerCustomAdvanced: max abs error {error:.3g} on values up to {largest:.3g}")
    assert error < SAMPLING_RELATIVE_TOLERANCE * largest


def test_parity_fixture_discriminates_loader_mistakes(host, tiny_model, tiny_checkpoint, stages, sampling_reference,
                                                      manifest):
    """The comparisons above tell right from wrong: the model sampling without VideoCrafter2's rescale, and the
    text encoder's last layer instead of the penultimate, each fail them."""
    from fifo_infinity.videocrafter.loader import load_videocrafter
    plain = load_videocrafter(tiny_checkpoint, rescale=False, text_heads=manifest["text_encoder"]["heads"],
                              dtype=torch.float32)[0]
    latents = base_ddim_through_comfyui(host, plain, stages, sampling_reference, manifest)
    reference = to_frames(sampling_reference["base.eta0.latents"])
    assert (latents - reference).abs().max().item() > SAMPLING_RELATIVE_TOLERANCE * reference.abs().max().item()
    clip = tiny_model[1].clone()
    clip.clip_layer(-1)
    last = clip.encode_from_tokens(clip.tokenize(manifest["prompts"][1]))
    assert (last[0] - stages["text.embeddings"][1]).abs().max().item() > FORWARD_TOLERANCE


def test_rescale_switch_gives_plain_eps_sampling(tiny_model):
    import comfy.model_sampling
    from fifo_infinity.videocrafter.model_base import VideoCrafterModelSampling

    class Plain(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass
    plain, ours = Plain(None), VideoCrafterModelSampling(None, rescale=False)
    assert torch.allclose(plain.sigmas, ours.sigmas, rtol=2e-4)   # ComfyUI: float64 alphas; ours: float32 as official (1 - a_0 ~ 8.5e-4)
    sigma = ours.sigmas[[10, 500, 999]]
    x = torch.randn(3, 4, 2, 2)
    assert torch.allclose(ours.calculate_input(sigma, x), plain.calculate_input(sigma, x), rtol=1e-5)
    rescaled = tiny_model[0].get_model_object("model_sampling")
    # below t=400 the rescale changes sigma: sigma~(t) = sigma(t) / s_t with s_399 ~ 0.7
    assert (rescaled.sigmas[999] / ours.sigmas[999]).item() == pytest.approx(1 / 0.7, rel=1e-5)
    assert rescaled.sigmas[0].item() == pytest.approx(ours.sigmas[0].item(), rel=1e-6)


def test_spatial_attention_patches_fire(tiny_model, stages):
    """ComfyUI's attn1/attn2 patches and replaces reach our spatial transformers (other packs' patches work)."""
    model = tiny_model[0].clone()
    calls = {"attn1_patch": 0, "attn2_replace": 0}

    def attn1_patch(n, context, value, extra_options):
        calls["attn1_patch"] += 1
        return n, context, value

    def attn2_replace(q, k, v, extra_options):
        calls["attn2_replace"] += 1
        from comfy.ldm.modules.attention import optimized_attention
        return optimized_attention(q, k, v, extra_options["n_heads"]) * 0.5

    model.set_model_attn1_patch(attn1_patch)
    model.set_model_attn2_replace(attn2_replace, "output", len(model.model.diffusion_model.output_blocks) - 1)
    unet = model.model.diffusion_model
    x = to_frames(stages["unet.x"])
    options = model.model_options["transformer_options"]
    with torch.no_grad():
        patched = unet(x, stages["unet.t_frames"].float(), context=stages["unet.context"],
                       transformer_options=dict(options, cond_or_uncond=[0]))
        plain = unet(x, stages["unet.t_frames"].float(), context=stages["unet.context"],
                     transformer_options={"cond_or_uncond": [0]})
    spatial_transformers = sum(1 for m in unet.modules() if type(m).__name__ == "SpatialTransformer")
    assert calls["attn1_patch"] == spatial_transformers
    assert calls["attn2_replace"] == 1
    assert not torch.allclose(patched, plain)
