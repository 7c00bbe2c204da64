"""FIFO+ latent seeding (t2v_seed) and "start from an image" through the real host, on the reference tiny
VideoCrafter1 image-to-video model: what reaches the UNet, when, and the refusals. The core's timing (slot 0
after the queue is built, re-seeds from the popped frame, exact resume) is tested in tests/test_fifo_resume.py."""

import pytest
import torch

from conftest import load_api_workflow

FRAMES = 12


class Recording:
    """Wraps a VAE or an image encoder and records the inputs and outputs of one method."""

    def __init__(self, inner, method):
        self.inner, self.method, self.calls = inner, method, []

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        def record(x, *args, **kwargs):
            out = attribute(x, *args, **kwargs)
            self.calls.append((x.clone(), out.clone()))
            return out
        return record


def encode(clip, text):
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def run_fifo(host, model, clip, vae, encoder, reseed_every=0, positive=None, contexts=None):
    from fifo_infinity.nodes.consistency import FIFOInfinityLatentSeeding as FIFOLatentSeeding
    from fifo_infinity.nodes.fifo import FIFOInfinityFIFOSamplerAllInOne as FIFOSamplerAllInOneNode
    if contexts is not None:
        model = model.clone()

        def wrapper(apply_model, args):
            c = args["c"]
            contexts.append((c["c_crossattn"].clone(), list(c["transformer_options"]["cond_or_uncond"])))
            return apply_model(args["input"], args["timestep"], **c)
        model.set_model_unet_function_wrapper(wrapper)
    seeding = FIFOLatentSeeding.execute(vae, encoder, reseed_every).args[0]
    positive = positive if positive is not None else encode(clip, "a red ball")
    out = FIFOSamplerAllInOneNode.execute(
        model, positive, encode(clip, ""), FRAMES, 64, 64, 1, 3.0, 4, 2, True, 1.0, 0, "official", 8,
        latent_seeding=seeding)
    return out.args[0]["samples"]


def test_the_seed_frame_conditions_every_fifo_call(host, tiny_i2v):
    model, clip, vae, _, encoder = tiny_i2v
    vae_rec, encoder_rec = Recording(vae, "decode"), Recording(encoder, "encode")
    contexts = []
    samples = run_fifo(host, model, clip, vae_rec, encoder_rec, contexts=contexts)
    assert samples.shape == (FRAMES, 4, 8, 8)
    assert len(vae_rec.calls) == 1 and len(encoder_rec.calls) == 1          # seeded once (reseed_every 0)
    latent, image = vae_rec.calls[0]
    assert latent.shape == (1, 4, 8, 8) and image.shape[-1] == 3
    tokens = encoder_rec.calls[0][1]
    assert torch.equal(encoder_rec.calls[0][0], image[:1, :, :, :3])       # the decoded seed frame is what is embedded
    grey = encoder.unconditional_tokens()
    text_positive = encode(clip, "a red ball")[0][0]
    base_calls = [c for c in contexts if c[0].shape[1] == 77]
    fifo_calls = [c for c in contexts if c[0].shape[1] == 93]
    assert base_calls and fifo_calls and len(base_calls) + len(fifo_calls) == len(contexts)
    shapes = [c[0].shape[1] for c in contexts]
    assert shapes == [77] * len(base_calls) + [93] * len(fifo_calls)        # the base clip first, text only
    for context, cond_or_uncond in fifo_calls:
        per_branch = context.chunk(len(cond_or_uncond))
        for branch, chunk in zip(cond_or_uncond, per_branch):
            expected = tokens if branch == 0 else grey                     # 0 = cond, 1 = uncond
            assert torch.allclose(chunk[:, 77:], expected.expand(chunk.shape[0], -1, -1), atol=1e-6)
            if branch == 0:
                assert torch.allclose(chunk[:, :77], text_positive.expand(chunk.shape[0], -1, -1))


def test_reseeding_replaces_the_seed_and_the_context_does_not_grow(host, tiny_i2v):
    model, clip, vae, _, encoder = tiny_i2v
    encoder_rec = Recording(encoder, "encode")
    contexts = []
    run_fifo(host, model, clip, vae, encoder_rec, reseed_every=4, contexts=contexts)
    assert len(encoder_rec.calls) == 3                                       # at the start, after 4 and 8 frames
    assert {c[0].shape[1] for c in contexts} == {77, 93}
    seeds_seen = {tuple(context.chunk(len(branches))[branches.index(0)][0, 77:].flatten()[:4].tolist())
                  for context, branches in contexts if context.shape[1] == 93}
    assert len(seeds_seen) == 3


def test_seeding_a_text_to_video_model_is_refused(host, tiny_model, tiny_i2v):
    model, clip, vae, _ = tiny_model
    with pytest.raises(ValueError, match="no image cross-attention"):
        run_fifo(host, model, clip, vae, tiny_i2v[4])


def test_seeding_with_image_conditioning_already_there_is_refused(host, tiny_i2v):
    from fifo_infinity.bridge.consistency import append_image_tokens
    model, clip, vae, _, encoder = tiny_i2v
    positive = append_image_tokens(encode(clip, "a red ball"), encoder.unconditional_tokens())
    with pytest.raises(ValueError, match="positive conditioning already has 93 tokens"):
        run_fifo(host, model, clip, vae, encoder, positive=positive)


def test_seeding_without_an_image_encoder_is_refused(host, tiny_i2v):
    from fifo_infinity.nodes.consistency import FIFOInfinityLatentSeeding as FIFOLatentSeeding
    with pytest.raises(ValueError, match="image_encoder: this checkpoint has no image encoder"):
        FIFOLatentSeeding.execute(tiny_i2v[2], None, 0)


def test_image_to_base_clip_repeats_the_encoded_image(host, tiny_model):
    from fifo_infinity.nodes.consistency import FIFOInfinityImageToBaseClip as ImageToFIFOBaseClip
    vae = tiny_model[2]
    image = torch.rand(1, 80, 100, 3, generator=torch.Generator().manual_seed(0))
    clip = ImageToFIFOBaseClip.execute(image, vae, 4, 64, 64).args[0]["samples"]
    assert clip.shape == (4, 4, 8, 8)
    assert all(torch.equal(clip[i], clip[0]) for i in range(4))
    import comfy.utils
    resized = comfy.utils.common_upscale(image.movedim(-1, 1), 64, 64, "bilinear", "center").movedim(1, -1)
    assert torch.allclose(clip[0], vae.encode(resized)[0])
    assert "multiple of 64" in ImageToFIFOBaseClip.validate_inputs(width=100, height=64)


def test_the_seeding_example_runs_through_the_server(server):
    prompt = load_api_workflow("fifo_latent_seeding.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc1_i2v.safetensors"
    prompt["5"]["inputs"].update(frames=FRAMES, width=64, height=64, video_length=4, num_partitions=2)
    entry = server.wait(server.queue(prompt), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (path,) = [p for p in server.output_files(entry, "7", "images")]
    from PIL import Image
    with Image.open(path) as image:
        assert image.n_frames == FRAMES
