"""Video-Infinity in one process: the pure core, parity with the official plugins' fixture through the
in-process transports, the patched UNet (one call == clip groups; context off == the plain model), the nodes
and a stock-sampler run.

The torch.distributed (gloo) transport is tested in test_video_infinity_distributed.py.
Fixture: $VIDEO_INFINITY_REFERENCE_DIR (default ../shared/reference/video_infinity); every case, size and
setting comes from its video_infinity.json.
"""

import math

import pytest
import torch

from video_infinity_support import (UNET_CLIP_FRAMES, UNET_CLIPS, case_options, load_reference, reference_modules,
                                    run_case, unet_forward, unet_inputs, unet_options)

PARITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference(vi_reference_dir, host):
    meta, tensors = load_reference(vi_reference_dir)
    return meta, tensors, reference_modules(meta, tensors)


def _fixture_cases():
    from conftest import _find_reference
    meta, _ = load_reference(_find_reference("VIDEO_INFINITY_REFERENCE_DIR", "video_infinity"))
    return meta["cases"]


CASES = _fixture_cases()


# ---------------------------------------------------------------------------------------------------
# The pure core
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames,clips,top_k,indices,count", [
    (24, 4, 16, [0, 6, 12, 18], 16),                # config.json: every 6th frame of the video
    (24, 8, 16, [0, 12], 16),                       # multi_promts.json
    (288, 8, 16, [0, 144], 16),                     # the paper's 2304-frame run
    (24, 1, 16, list(range(24)), 16),               # single_gpu.json: frames 0-15 of the clip
    (24, 3, 16, [0, 4, 8, 12, 16, 20], 16),         # 18 gathered, cut to 16: the last clip keeps 4
    (24, 5, 16, [0, 8, 16], 15),                    # 15 < 16
    (24, 20, 16, [0], 16),                          # W > top_k: frame 0 of the first 16 clips
    (13, 3, 8, [0, 6, 12], 8),
])
def test_global_frame_selection_is_the_official_stride(frames, clips, top_k, indices, count):
    from fifo_infinity.attention.video_infinity import global_frame_indices
    assert global_frame_indices(frames, clips, top_k) == (indices, count)


def test_mask_window_base_value_and_zero_padding_left_unmasked():
    from fifo_infinity.attention.video_infinity import base_mask
    f, p, g = 6, 2, 3
    mask = base_mask(f, p, g)
    assert mask.shape == (f, f + 2 * p + g)
    for i in range(f):
        seen = torch.isfinite(mask[i, :f + 2 * p]).nonzero().flatten().tolist()
        assert seen == list(range(i, i + 2 * p + 1))          # own frames i-p .. i+p in padded columns
    assert torch.all(mask[:, f + 2 * p:] == 1.0)              # the global block is never masked
    assert mask[0, 0].item() == 1.0 and mask[f - 1, -g - 1].item() == 1.0   # zero-padding columns at the ends


def test_phase_biases_follow_the_timestep_thresholds():
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions, attention_bias
    options = VideoInfinityOptions(frames_per_clip=4, padding=1, global_frames=2)
    t = torch.tensor([[800.0, 799.0, 999.0, 33.0]])              # one timestep per query frame
    bias = attention_bias(t, options, 2)
    assert bias[0, :, -1].tolist() == [11.0, 1.0, 11.0, 1.0]     # global keys: +10 at t >= 800
    own = torch.stack([bias[0, i, i + 1] for i in range(4)])     # each query's own frame (local block)
    assert own.tolist() == [1.0, 11.0, 1.0, 11.0]                # local keys: +10 at t < 800
    assert torch.isinf(bias[0, 0, 3]) and bias[0, 0, 3] < 0      # outside the window stays -inf


def test_token_num_scale_is_log16_of_keys_seen():
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions, attention_bias, softmax_scale
    options = VideoInfinityOptions(token_num_scale=True)          # official sizes: 17 local + 16 global keys
    bias = attention_bias(torch.full((1, 24), 500.0), options, 16)
    scale = softmax_scale(64, options, bias)
    assert scale.shape == (1, 24, 1)
    assert torch.allclose(scale, torch.full_like(scale, 0.125 * math.log(33) / math.log(16)))
    assert scale[0, 0, 0].item() == pytest.approx(0.15764, abs=1e-5)


def test_partition_and_prompt_assignment():
    from fifo_infinity.attention.video_infinity import partition_clips, prompt_index
    assert partition_clips(4, 2) == [2, 2]
    assert partition_clips(5, 3) == [2, 2, 1]
    assert [prompt_index(r, 8, 4) for r in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [prompt_index(r, 4, 1) for r in range(4)] == [0, 0, 0, 0]
    assert [prompt_index(r, 3, 8) for r in range(3)] == [0, 2, 5]


def test_official_config_is_read_with_its_spellings():
    from fifo_infinity.attention.video_infinity import Phase, VideoInfinityOptions
    config = {"pipe_configs": {"num_frames": 24}, "attn": {"padding": 8, "top_k": 16, "top_k_chunk_size": 24,
              "attn_scale": 1.0, "token_num_scale": False, "dynamic_scale": True,
              "local_phase": {"t": 850, "local_biase": 10, "global_biase": 0},
              "global_phase": {"t": 850, "local_biase": 0, "global_biase": 10}}}
    options = VideoInfinityOptions.from_official_config(config)
    assert options.global_phase == Phase(850, 0.0, 10.0) and options.local_phase == Phase(850, 10.0, 0.0)
    assert VideoInfinityOptions() == VideoInfinityOptions.from_official_config(
        dict(config, attn=dict(config["attn"], local_phase={"t": 800, "local_biase": 10, "global_biase": 0},
                               global_phase={"t": 800, "local_biase": 0, "global_biase": 10})))


@pytest.mark.parametrize("devices", [None, ["cpu", "cpu"], ["cpu", "cpu", "cpu"]])
def test_synchronised_group_norm_equals_one_norm_over_the_whole_video(devices):
    from fifo_infinity.parallel.transport import InProcessTransport
    from fifo_infinity.attention.video_infinity import synced_group_norm
    generator = torch.Generator().manual_seed(3)
    chunks, clips, channels, f = 2, 3, 8, 5
    x = torch.randn(chunks, clips, channels, f, 2, 3, generator=generator) * 3 + 1
    weight, bias = torch.randn(channels, generator=generator), torch.randn(channels, generator=generator)
    video = x.transpose(1, 2).reshape(chunks, channels, clips * f, 2, 3)
    expected = torch.nn.functional.group_norm(video, 4, weight, bias, 1e-6)
    expected = expected.reshape(chunks, channels, clips, f, 2, 3).transpose(1, 2)

    def work(endpoint):
        a, b = endpoint.first_clip, endpoint.first_clip + endpoint.local_clips
        return synced_group_norm(x[:, a:b], 4, 1e-6, weight, bias, endpoint)

    out = torch.cat(InProcessTransport(devices).run(clips, work, torch.device("cpu")), 1)
    assert (out - expected).abs().max().item() < 1e-5
    per_clip = torch.nn.functional.group_norm(x[:, 0], 4, weight, bias, 1e-6)
    assert not torch.allclose(out[:, 0], per_clip, atol=1e-3)      # really not per-clip statistics


def test_clear_errors():
    from fifo_infinity.parallel.transport import parse_devices
    from fifo_infinity.attention.video_infinity import (VideoInfinityError, VideoInfinityOptions, check_clips,
                                                       clip_count, partition_clips)
    with pytest.raises(VideoInfinityError, match=r"frames_per_clip = 12 is smaller than 2 \* padding = 16"):
        VideoInfinityOptions(frames_per_clip=12, padding=8)
    with pytest.raises(VideoInfinityError, match="50 frames, which is not a whole number of clips of frames_per_clip = 24"):
        clip_count(50, 24)
    with pytest.raises(VideoInfinityError, match=r"global_frames = 40 is larger than the whole video \(1 clip\(s\) x 24"):
        check_clips(VideoInfinityOptions(global_frames=40), 1)
    with pytest.raises(VideoInfinityError, match="'cuda:7' does not exist|'cuda:7' does not exist: there are"):
        parse_devices("cpu, cuda:7")
    with pytest.raises(VideoInfinityError, match="'potato' is not a torch device name"):
        parse_devices("potato")
    with pytest.raises(VideoInfinityError, match="2 clip\\(s\\) cannot be spread over 3"):
        partition_clips(2, 3)
    assert parse_devices("") == "auto" and parse_devices("cpu,cpu") == [torch.device("cpu")] * 2


# ---------------------------------------------------------------------------------------------------
# Parity with the official plugins (fixture), through the in-process transports
# ---------------------------------------------------------------------------------------------------

def _layouts(clips):
    layouts = {"one call": None}
    if clips >= 2:
        layouts["two device groups (cpu,cpu)"] = ["cpu", "cpu"]
    if clips >= 3:
        layouts["one group per clip"] = ["cpu"] * clips
    return layouts


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_parity_with_official_plugins_in_process(reference, case):
    from fifo_infinity.parallel.transport import InProcessTransport
    meta, tensors, modules = reference
    name = case["name"]
    for label, devices in _layouts(case["clips"]).items():
        attn, conv = run_case(case, meta, tensors, modules, InProcessTransport(devices))
        attn_error = (attn - tensors[f"{name}.attn_out"]).abs().max().item()
        conv_error = (conv - tensors[f"{name}.conv_out"]).abs().max().item()
        print(f"{name} [{label}]: attn_out max abs error {attn_error:.3g}, conv_out {conv_error:.3g}")
        assert attn_error < PARITY_TOLERANCE, (name, label)
        assert conv_error < PARITY_TOLERANCE, (name, label)


def test_parity_fixture_discriminates(reference):
    """The fixture is sensitive to the details docs/video_infinity.md warns about ("Pitfalls reproduced or fixed"),
    so the parity above is not vacuous: each variant moves some case's output by far more than the tolerance."""
    import dataclasses
    from fifo_infinity.parallel.transport import InProcessTransport
    meta, tensors, modules = reference
    variants = {"padding - 1": lambda o: dataclasses.replace(o, padding=o.padding - 1),
                "no global set": lambda o: dataclasses.replace(o, global_frames=0),
                "phases swapped": lambda o: dataclasses.replace(o, local_phase=o.global_phase, global_phase=o.local_phase),
                "token_num_scale flipped": lambda o: dataclasses.replace(o, token_num_scale=not o.token_num_scale),
                "no conv context": lambda o: dataclasses.replace(o, conv_context_frames=0)}
    for label, change in variants.items():
        worst = 0.0
        for case in CASES:
            attn, conv = run_case(case, meta, tensors, modules, InProcessTransport(),
                                  options=change(case_options(meta, case)))
            worst = max(worst, (attn - tensors[f"{case['name']}.attn_out"]).abs().max().item(),
                        (conv - tensors[f"{case['name']}.conv_out"]).abs().max().item())
        assert worst > 1e-3, label


# ---------------------------------------------------------------------------------------------------
# The patched UNet
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet_case(tiny_model, manifest):
    """(model, x, t, context, output of the unpatched model)."""
    x, t, context = unet_inputs(tuple(manifest["latent_hw"]), manifest["unet"]["context_dim"])
    model = tiny_model[0]
    return model, x, t, context, unet_forward(model, x, t, context)


def _spy(model):
    """Record (participant index, clips per participant) of every temporal attention call."""
    seen = set()

    def spy(q, extra_options):
        call = extra_options.get("video_infinity_call")
        if call is not None:
            seen.add((call.endpoint.index, tuple(call.endpoint.sizes)))
        return q

    model.set_model_patch(spy, "temporal_query")
    return seen


@pytest.mark.parametrize("sync", [False, True], ids=["per-clip GroupNorm", "synchronised GroupNorm"])
def test_patched_unet_one_call_equals_device_groups(unet_case, sync):
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    model, x, t, context, plain = unet_case
    outputs, participants = {}, {}
    for devices in ("", "cpu,cpu", ",".join(["cpu"] * UNET_CLIPS)):
        patched = apply_video_infinity(model, unet_options(sync), devices)
        participants[devices] = _spy(patched)
        outputs[devices] = unet_forward(patched, x, t, context)
    assert participants[""] == {(0, (UNET_CLIPS,))}
    assert participants["cpu,cpu"] == {(0, (2, 1)), (1, (2, 1))}
    assert len(participants[",".join(["cpu"] * UNET_CLIPS)]) == UNET_CLIPS
    for devices, out in outputs.items():
        error = (out - outputs[""]).abs().max().item()
        print(f"patched UNet, sync={sync}, devices={devices!r} vs one call: max abs error {error:.3g}")
        assert error < PARITY_TOLERANCE
    assert (outputs[""] - plain).abs().max().item() > 1e-3       # the context really changes the output


def test_groups_on_other_devices_run_on_weight_replicas(unet_case, monkeypatch):
    """The path of a group whose device is not the model's: a replica of the UNet made tensor by tensor on that
    device, called through its own forward (wrappers included), dropped when the sampling ends. This machine has
    only a CPU, so "another device" is simulated by declaring every device different from the model's."""
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    from fifo_infinity.bridge import device_groups
    model, x, t, context, _ = unet_case
    patched = apply_video_infinity(model, unet_options(), "cpu,cpu")
    expected = unet_forward(patched, x, t, context)
    runtime = patched.wrappers["diffusion_model"]["video_infinity"][0].__self__
    monkeypatch.setattr(device_groups, "same_device", lambda a, b: False)
    out = unet_forward(patched, x, t, context)
    assert (out - expected).abs().max().item() < PARITY_TOLERANCE
    assert len(runtime.replicas._replicas) == 1
    replica = next(iter(runtime.replicas._replicas.values()))
    unet = model.model.diffusion_model
    assert replica is not unet
    for (name, original), (_, copied) in zip(unet.named_parameters(), replica.named_parameters()):
        # its own parameters (on a real second device, its own memory; `.to` on the same device shares it)
        assert copied is not original and torch.equal(original, copied), name
    runtime.outer_sample_wrapper(lambda *args, **kwargs: None)
    assert not runtime.replicas._replicas


def test_context_disabled_equals_the_plain_model(unet_case):
    import dataclasses
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    model, x, t, context, plain = unet_case
    off = dataclasses.replace(unet_options(), dual_scope_attention=False, conv_context_frames=0)
    # W = 1 with the context off: exactly the unpatched model
    whole = dataclasses.replace(off, frames_per_clip=UNET_CLIPS * UNET_CLIP_FRAMES, padding=0)
    assert torch.equal(unet_forward(apply_video_infinity(model, whole, ""), x, t, context), plain)
    # W clips with the context off, in two groups: every clip as an independent plain clip (the unpatched
    # model told that a video is F frames long)
    clipped = unet_forward(apply_video_infinity(model, off, "cpu,cpu"), x, t, context)
    separate = model.clone()
    separate.model_options["transformer_options"]["video_length"] = UNET_CLIP_FRAMES
    error = (clipped - unet_forward(separate, x, t, context)).abs().max().item()
    print(f"context off, 3 clips in 2 groups vs independent plain clips: max abs error {error:.3g}")
    assert error < PARITY_TOLERANCE
    assert (clipped - plain).abs().max().item() > 1e-3


def test_patched_model_errors_name_the_problem(unet_case):
    import dataclasses
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    from fifo_infinity.attention.video_infinity import VideoInfinityError
    model, x, t, context, _ = unet_case
    with pytest.raises(VideoInfinityError, match="not a whole number of clips of frames_per_clip = 5"):
        unet_forward(apply_video_infinity(model, dataclasses.replace(unet_options(), frames_per_clip=5), ""), x, t, context)
    too_many = dataclasses.replace(unet_options(), global_frames=UNET_CLIPS * UNET_CLIP_FRAMES + 1)
    with pytest.raises(VideoInfinityError, match="global_frames = 13 is larger than the whole video"):
        unet_forward(apply_video_infinity(model, too_many, ""), x, t, context)
    with pytest.raises(VideoInfinityError, match="'cuda:3' does not exist"):
        apply_video_infinity(model, unet_options(), "cuda:3")


# ---------------------------------------------------------------------------------------------------
# Nodes and a stock sampler
# ---------------------------------------------------------------------------------------------------

def test_nodes_registered_with_descriptions_and_tooltips(host):
    for name in ("FIFOInfinityVideoInfinityContext", "FIFOInfinityApplyVideoInfinity", "FIFOInfinityVideoInfinityPrompts", "FIFOInfinityVideoInfinityDecode"):
        node = host.NODE_CLASS_MAPPINGS[name]
        schema = node.GET_SCHEMA()
        assert len(schema.description) > 60, name
        for entry in schema.inputs:
            assert entry.tooltip, (name, entry.id)
        for entry in schema.outputs:
            assert entry.tooltip, (name, entry.id)
    context = host.NODE_CLASS_MAPPINGS["FIFOInfinityVideoInfinityContext"]
    assert "VIDEO_INFINITY_CONTEXT" in context.RETURN_TYPES


def test_context_node_defaults_are_the_official_config(host):
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityVideoInfinityContext"]
    required = node.INPUT_TYPES()["required"]
    defaults = {name: spec[1]["default"] for name, spec in required.items()}
    assert node.execute(**defaults).result[0].as_dict() == VideoInfinityOptions().as_dict()
    assert defaults["frames_per_clip"] == 24 and defaults["padding"] == 8 and defaults["global_frames"] == 16
    with pytest.raises(ValueError, match=r"smaller than 2 \* padding"):      # a rule across inputs: when it runs
        node.execute(**dict(defaults, frames_per_clip=10))
    assert "attn_scale = inf is not a finite number" in node.validate_inputs(attn_scale=float("inf"))
    assert "local_phase_local_bias = 1000000.0 is outside its range" in node.validate_inputs(
        local_phase_local_bias=1e6)
    with pytest.raises(ValueError, match="local_phase_t = 5000 is outside its range"):   # linked ints, when it runs
        node.execute(**dict(defaults, local_phase_t=5000))
    assert node.validate_inputs(**{k: v for k, v in defaults.items() if isinstance(v, float)}) is True


def test_apply_node_validates_devices(host):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityApplyVideoInfinity"]
    assert node.validate_inputs(devices="") is True
    assert node.validate_inputs(devices="cpu,cpu") is True
    assert "does not exist" in node.validate_inputs(devices="cuda:5")
    assert "torchrun" in node.validate_inputs(devices="distributed")


def test_stock_sampler_with_multi_prompt_and_fps(host, tiny_model, manifest):
    """SamplerCustomAdvanced + dpmpp_2m_sde on the patched model with two prompts over three clips; the
    per-frame conditioning gives each clip its prompt (floor(r*P/W)) and keeps the fps."""
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions
    mappings = host.NODE_CLASS_MAPPINGS
    model, clip = tiny_model[0], tiny_model[1]
    options = unet_options()
    clips, f = UNET_CLIPS, UNET_CLIP_FRAMES
    h, w = manifest["latent_hw"]
    latent = {"samples": torch.zeros(clips * f, 4, h, w)}
    encode = lambda text: mappings["CLIPTextEncode"]().encode(clip, text)[0]
    fps = lambda cond: mappings["FIFOInfinityVideoCrafterFPS"].execute(cond, 24).result[0]
    first, second, negative = fps(encode("a red ball")), encode("an astronaut in space"), fps(encode(""))
    positive = mappings["FIFOInfinityVideoInfinityPrompts"].execute(context=[options], latent=[latent], conditioning_1=[first],
                                                       conditioning_2=[second]).result[0]
    cond = positive[0][0]
    assert cond.shape[0] == clips * f and positive[0][1]["fps"] == 24
    assert torch.equal(cond[:2 * f], first[0][0].expand(2 * f, -1, -1))       # clips 0, 1: prompt floor(r*2/3) = 0
    assert torch.equal(cond[2 * f:], second[0][0].expand(f, -1, -1))           # clip 2: prompt 1

    patched = mappings["FIFOInfinityApplyVideoInfinity"].execute(model, options, "").result[0]
    guider = mappings["CFGGuider"].execute(patched, positive, negative, 12.0).result[0]
    sampler = mappings["SamplerDPMPP_2M_SDE"].execute("midpoint", 1.0, 1.0, "cpu").result[0]
    sigmas = mappings["BasicScheduler"].execute(patched, "sgm_uniform", 2, 1.0).result[0]
    noise = mappings["RandomNoise"].execute(5).result[0]
    out = mappings["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent).result[0]["samples"]
    assert out.shape == latent["samples"].shape and torch.isfinite(out).all()

    bad = {"samples": torch.zeros(clips * f + 1, 4, h, w)}
    with pytest.raises(Exception, match="not a whole number of clips"):
        mappings["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, bad)
    assert isinstance(options, VideoInfinityOptions)


def test_decode_node_in_one_process_is_vae_decode(host, tiny_model, manifest):
    mappings = host.NODE_CLASS_MAPPINGS
    vae = tiny_model[2]
    h, w = manifest["latent_hw"]
    latent = torch.randn(2 * UNET_CLIP_FRAMES, 4, h, w, generator=torch.Generator().manual_seed(1))
    images = mappings["FIFOInfinityVideoInfinityDecode"].execute(vae, {"samples": latent}, unet_options()).result[0]
    assert torch.equal(images, vae.decode(latent))
    with pytest.raises(ValueError, match="not a whole number of clips"):
        mappings["FIFOInfinityVideoInfinityDecode"].execute(vae, {"samples": latent[:5]}, unet_options())
