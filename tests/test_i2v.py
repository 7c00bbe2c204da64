"""VideoCrafter1 image-to-video: loader, image encoder, image cross-attention and the conditioning node, against
the official code's outputs on a tiny I2V checkpoint.

Fixtures: $FIFO_I2V_REFERENCE_DIR (default ../shared/reference/vc1_i2v_tiny), sizes from its i2v_manifest.json.
Tolerance: 1e-4 absolute in fp32 (docs/videocrafter2.md, "Parity with the official code").
"""

import os

import pytest
import safetensors.torch
import torch

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sizes(i2v_manifest):
    """Token counts and widths of the fixture: OpenCLIP's 77 text tokens (the official constant, the pack's
    TEXT_TOKENS), the Resampler's queries and the text width from i2v_manifest.json."""
    from fifo_infinity.videocrafter.image_attention import TEXT_TOKENS
    queries = i2v_manifest["resampler"]["num_queries"]
    return dict(text=TEXT_TOKENS, queries=queries, context=TEXT_TOKENS + queries, width=i2v_manifest["text_width"])


def to_frames(video):
    return video[0].transpose(0, 1)


@pytest.fixture(scope="module")
def reference(i2v_reference_dir):
    return safetensors.torch.load_file(os.path.join(i2v_reference_dir, "i2v.safetensors"))


def comfy_image(reference):
    """The reference image ([-1, 1], [1, 3, H, W]) as a ComfyUI IMAGE ([1, H, W, 3] in [0, 1])."""
    return ((reference["image"] + 1) / 2).permute(0, 2, 3, 1)


def unet_eps(model, reference, context, **extra_options):
    options = dict(model.model_options.get("transformer_options", {}), cond_or_uncond=[0], **extra_options)
    with torch.no_grad():
        return model.model.diffusion_model(to_frames(reference["unet.x"]), reference["unet.t_frames"].float(),
                                           context=context, transformer_options=options,
                                           fps=reference["unet.fps"].float())


def report(name, value, expected):
    error = (value - expected).abs().max().item()
    print(f"I2V {name}: max abs error {error:.3g} (reference max {expected.abs().max():.3g})")
    return error


# --- loading -----------------------------------------------------------------------------------------------

def test_loader_recognises_the_i2v_layout(tiny_i2v, i2v_manifest):
    from fifo_infinity.videocrafter.convert import infer_unet_config
    from fifo_infinity.videocrafter.image_attention import ImageCrossAttention
    model, _, _, parts, encoder = tiny_i2v
    config = infer_unet_config(parts["unet"])
    assert config["image_cross_attention"] is True
    unet = model.model.diffusion_model
    spatial = [m for m in unet.modules() if type(m).__name__ == "SpatialTransformer"]
    assert spatial and all(isinstance(b.attn2, ImageCrossAttention) for s in spatial for b in s.transformer_blocks)
    # every checkpoint UNet key is used, none is missing (to_k_ip / to_v_ip included)
    assert set(unet.state_dict()) == set(parts["unet"])
    assert sum(".to_k_ip." in k for k in parts["unet"]) == len(spatial)
    assert encoder.token_count == i2v_manifest["resampler"]["num_queries"]


def test_text_to_video_checkpoint_has_no_image_encoder(tiny_model):
    from fifo_infinity.videocrafter.image_attention import ImageCrossAttention
    from fifo_infinity.videocrafter.image_encoder import build_image_encoder
    assert build_image_encoder(tiny_model[3]) is None
    assert not any(isinstance(m, ImageCrossAttention) for m in tiny_model[0].model.diffusion_model.modules())


def test_real_size_image_encoder_on_the_meta_device(host):
    """VideoCrafter1's sizes (ViT-H-14 visual, Resampler 1024/4/12x64/16 queries) give the official checkpoint's
    counts: `image_proj_model.*` 51 keys and 48.5 M values; `embedder.model.*` 683.8 M values, i.e. our visual
    tower plus the unused parts the official code keeps (text token/position embeddings, ln_final,
    text_projection, logit_scale, visual.proj)."""
    import comfy.ops
    from fifo_infinity.videocrafter.image_encoder import ImageEncoderModule
    vision = {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120,
              "hidden_act": "gelu", "model_type": "clip_vision_model", "num_channels": 3, "patch_size": 14, "image_size": 224}
    resampler = dict(dim=1024, depth=4, dim_head=64, heads=12, num_queries=16, embedding_dim=1280, output_dim=1024, ff_mult=4)
    state = ImageEncoderModule(vision, resampler, device="meta", operations=comfy.ops.disable_weight_init).state_dict()
    resampler_keys = [k for k in state if k.startswith("resampler.")]
    assert len(resampler_keys) == 51
    assert round(sum(state[k].numel() for k in resampler_keys) / 1e6, 1) == 48.5
    visual = sum(v.numel() for k, v in state.items() if k.startswith("visual."))
    unused = 49408 * 1024 + 77 * 1024 + 2 * 1024 + 1024 * 1024 + 1 + 1280 * 1024
    assert round((visual + unused) / 1e6, 1) == 683.8


def test_parity_text_embeddings(tiny_i2v, reference, i2v_manifest):
    clip = tiny_i2v[1]
    for index, prompt in enumerate(i2v_manifest["prompts"]):
        embedding = clip.encode_from_tokens(clip.tokenize(prompt))
        assert report(f"text {index}", embedding[0], reference["text.embeddings"][index]) < TOLERANCE


# --- the image encoder ---------------------------------------------------------------------------------------

def test_parity_visual_tower_is_comfyuis_clip_vision(tiny_i2v, reference):
    """ComfyUI's CLIPVision, fed the converted OpenCLIP keys, gives all tokens of the last block before ln_post."""
    import comfy.clip_model
    encoder = tiny_i2v[4]
    assert isinstance(encoder.model.visual, comfy.clip_model.CLIPVisionModelProjection)
    tokens = encoder.embed_official(reference["image"])
    assert tokens.shape == reference["embedder.tokens"].shape
    assert report("embedder.tokens", tokens, reference["embedder.tokens"]) < TOLERANCE


def test_parity_resampler_tokens(tiny_i2v, reference):
    tokens = tiny_i2v[4].encode_official(reference["image"])
    assert tokens.shape == reference["image_proj.tokens"].shape
    assert report("image_proj.tokens", tokens, reference["image_proj.tokens"]) < TOLERANCE


def test_parity_unconditional_grey_image_tokens(tiny_i2v, reference):
    assert report("uncond_image.tokens", tiny_i2v[4].unconditional_tokens(), reference["uncond_image.tokens"]) < TOLERANCE


@pytest.mark.usefixtures("host")          # the image encoder module imports comfy
@pytest.mark.parametrize("size", [(320, 512), (700, 250)])
def test_resize_matches_kornias_antialiased_bicubic(size):
    """The official preprocessing shrinks real frames (kornia, antialias=True); the fixture image only enlarges.
    kornia comes with ComfyUI's requirements."""
    import kornia
    from fifo_infinity.videocrafter.image_encoder import resize_like_kornia
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = kornia.geometry.transform.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    assert (resize_like_kornia(x, (224, 224)) - expected).abs().max().item() < 1e-5


# --- the UNet with image cross-attention ---------------------------------------------------------------------

@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_parity_unet_output_with_both_contexts(tiny_i2v, reference, sizes, branch):
    context = reference["unet.context" if branch == "cond" else "unet.uncond_context"]
    expected = to_frames(reference["unet.eps_frames" if branch == "cond" else "unet.eps_frames_uncond"])
    assert context.shape[1] == sizes["context"]
    assert report(f"unet.eps_frames ({branch})", unet_eps(tiny_i2v[0], reference, context), expected) < TOLERANCE


def test_image_tokens_change_the_output(tiny_i2v, reference, sizes):
    """The image attention is active: without image tokens (text tokens only) the output differs; text-only works."""
    with_image = unet_eps(tiny_i2v[0], reference, reference["unet.context"])
    text_only = unet_eps(tiny_i2v[0], reference, reference["unet.context"][:, :sizes["text"]])
    assert torch.isfinite(text_only).all()
    assert not torch.allclose(with_image, text_only, atol=1e-3)


# --- the conditioning node -------------------------------------------------------------------------------------

def test_parity_conditioning_node_appends_image_and_grey_tokens(host, tiny_i2v, reference, sizes):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityImageToVideoConditioning"]
    text, n = reference["text.embeddings"], sizes["text"]
    positive = [[text[1:2], {"pooled_output": torch.zeros(1, sizes["width"])}]]
    negative = [[text[0:1], {}]]
    pos, neg = node.execute(positive, negative, tiny_i2v[4], comfy_image(reference)).result
    assert pos[0][0].shape == neg[0][0].shape == (1, sizes["context"], sizes["width"])
    assert torch.equal(pos[0][0][:, :n], text[1:2]) and torch.equal(neg[0][0][:, :n], text[0:1])
    assert report("node positive", pos[0][0], reference["unet.context"]) < TOLERANCE
    assert report("node negative", neg[0][0], reference["unet.uncond_context"]) < TOLERANCE
    assert "pooled_output" in pos[0][1] and positive[0][0].shape[1] == n          # inputs not mutated


def test_conditioning_node_cuts_long_prompts_to_77_text_tokens(host, tiny_i2v, reference, sizes):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityImageToVideoConditioning"]
    long_text = torch.cat([reference["text.embeddings"][1:2]] * 2, dim=1)               # 2 x 77 tokens
    pos, _ = node.execute([[long_text, {}]], [[reference["text.embeddings"][0:1], {}]], tiny_i2v[4],
                          comfy_image(reference)).result
    assert pos[0][0].shape[1] == sizes["context"]


def test_conditioning_node_needs_an_image_encoder(host, tiny_model, reference):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityImageToVideoConditioning"]
    conditioning = [[reference["text.embeddings"][0:1], {}]]
    with pytest.raises(ValueError, match="image_encoder: this checkpoint has no image encoder"):
        node.execute(conditioning, conditioning, None, comfy_image(reference))


def test_loader_node_returns_the_image_encoder(host, i2v_reference_dir, tiny_checkpoint, sizes):
    import folder_paths
    folder_paths.add_model_folder_path("checkpoints", i2v_reference_dir)
    folder_paths.add_model_folder_path("checkpoints", os.path.dirname(tiny_checkpoint))
    loader = host.NODE_CLASS_MAPPINGS["FIFOInfinityCheckpointLoader"]
    assert loader.RETURN_TYPES[3] == "VIDEOCRAFTER_IMAGE_ENCODER"
    model, clip, vae, encoder = loader.execute("tiny_vc1_i2v.safetensors").result
    assert encoder is not None and encoder.token_count == sizes["queries"]
    assert model.model.model_config.unet_config["image_cross_attention"] is True
    assert loader.execute("tiny_vc2.safetensors").result[3] is None


def test_conditions_and_samples_with_the_stock_ksampler(host, tiny_i2v, reference, sizes):
    """Through ComfyUI's KSampler the UNet receives the text and image tokens on both CFG branches."""
    model = tiny_i2v[0].clone()
    seen = []

    def count_tokens(n, context, value, extra_options):
        seen.append(context.shape[1])
        return n, context, value

    model.set_model_attn2_patch(count_tokens)
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityImageToVideoConditioning"]
    text = reference["text.embeddings"]
    positive, negative = node.execute([[text[1:2], {}]], [[text[0:1], {}]], tiny_i2v[4], comfy_image(reference)).result
    frames, _, h, w = to_frames(reference["unet.x"]).shape
    sampler = host.NODE_CLASS_MAPPINGS["KSampler"]()
    out = getattr(sampler, sampler.FUNCTION)(model, 3, 2, 7.5, "euler", "normal", positive, negative,
                                             {"samples": torch.zeros(frames, 4, h, w)})[0]["samples"]
    assert out.shape == (frames, 4, h, w) and torch.isfinite(out).all()
    assert seen and set(seen) == {sizes["context"]}


# --- composition with the Q-cache ----------------------------------------------------------------------------

@pytest.mark.parametrize("transformers", ["temporal", "spatial", "temporal + spatial"])
def test_qcache_composes_with_image_attention(tiny_i2v, reference, transformers):
    """The spatial attn2 replace keeps the image attention: weight 0 is bit for bit the plain I2V model."""
    from fifo_infinity.bridge.qcache import apply_query_cache
    context = reference["unet.context"]
    plain = unet_eps(tiny_i2v[0], reference, context)
    off, _ = apply_query_cache(tiny_i2v[0], 0.0, "both", transformers)
    assert torch.equal(unet_eps(off, reference, context), plain)
    on, cache = apply_query_cache(tiny_i2v[0], 0.9, "attn2", transformers)
    blended = unet_eps(on, reference, context)
    assert torch.isfinite(blended).all() and not torch.allclose(blended, plain, atol=1e-3)
    assert cache.pending() == 0
