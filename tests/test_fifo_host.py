"""The FIFO nodes inside a real ComfyUI (in-process `host`, and the HTTP `server` for the example workflow).

The ComfyUI paths (SamplerCustomAdvanced + FIFO Sampler + FIFO Sigmas + CFGGuider, and the all-in-one node)
must reproduce the pure core (`samplers.fifo`, checked against the official code in test_fifo_core.py) run
with the same seed, to 1e-4 x max|output|. Small FIFO settings (f, n, N) keep this fast; sizes come from the
reference manifest.
"""

import os
import sys

import pytest
import safetensors.torch
import torch

from fifo_infinity.samplers import fifo, prompt_schedule as schedule
from conftest import frame_size
from test_fifo_core import CfgUNet, to_frames

RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def stages(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))


@pytest.fixture(scope="module")
def reference(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "fifo.safetensors"))


@pytest.fixture(scope="module")
def setup(tiny_model, stages, manifest):
    """Conditionings (with the manifest's fps), the latent size and the node classes."""
    embeddings = stages["text.embeddings"]
    fps = manifest["fifo"]["fps"]
    h, w = manifest["latent_hw"]
    return dict(model=tiny_model[0], vae=tiny_model[2], embeddings=embeddings, fps=fps, cfg=manifest["fifo"]["cfg_scale"],
                positive=[[embeddings[1:2], {"fps": fps}]], negative=[[embeddings[0:1], {"fps": fps}]],
                frame_shape=(4, h, w), width=w * 8, height=h * 8)


def core_model(setup, f, conds=None):
    unet = setup["model"].model.diffusion_model
    conds = conds if conds is not None else [setup["embeddings"][1:2]]
    return CfgUNet(unet, conds, setup["embeddings"][0:1], setup["cfg"], setup["fps"], f)


def run_custom_advanced(host, setup, sampler_inputs, frames, seed, positive=None, model=None):
    """SamplerCustomAdvanced(RandomNoise, CFGGuider, FIFO Sampler, FIFO Sigmas, Empty Video Latent)."""
    nodes = host.NODE_CLASS_MAPPINGS
    model = model if model is not None else setup["model"]
    guider = nodes["CFGGuider"].execute(model, positive or setup["positive"], setup["negative"], setup["cfg"]).result[0]
    sampler = nodes["FIFOInfinityFIFOSampler"].execute(**sampler_inputs).result[0]
    sigmas = nodes["FIFOInfinityFIFOSigmas"].execute(model, sampler_inputs["video_length"], sampler_inputs["num_partitions"]).result[0]
    latent = nodes["FIFOInfinityEmptyVideoLatent"].execute(setup["width"], setup["height"], frames).result[0]
    noise = nodes["RandomNoise"].execute(seed).result[0]
    out, denoised = nodes["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent).result
    return out, denoised


def sampler_inputs(**overrides):
    inputs = dict(video_length=8, num_partitions=2, lookahead=True, eta=0.0, window_batch=0, queue_init="official")
    inputs.update(overrides)
    return inputs


def compare(name, got, expected):
    assert got.shape == expected.shape, (name, tuple(got.shape), tuple(expected.shape))
    error, scale = (got - expected).abs().max().item(), expected.abs().max().item()
    print(f"\n[fifo host] {name}: max abs error {error:.3g}, max |core| {scale:.3g}, relative {error / scale:.3g}")
    assert error <= RELATIVE_TOLERANCE * scale


# ---------------------------------------------------------------- registration

FIFO_NODES = ["FIFOInfinityFIFOSampler", "FIFOInfinityFIFOSigmas", "FIFOInfinityFIFOSamplerAllInOne", "FIFOInfinityFIFOPromptSchedule"]


def test_nodes_are_registered_with_descriptions_and_tooltips(host):
    for name in FIFO_NODES:
        node = host.NODE_CLASS_MAPPINGS[name]
        schema = node.GET_SCHEMA()
        assert len(schema.description) > 60, name
        for entry in schema.inputs:
            assert entry.tooltip, (name, entry.id)
        for entry in schema.outputs:
            assert entry.tooltip, (name, entry)
    assert host.NODE_DISPLAY_NAME_MAPPINGS["FIFOInfinityFIFOSampler"] == "FIFO Sampler"
    assert host.NODE_DISPLAY_NAME_MAPPINGS["FIFOInfinityFIFOSamplerAllInOne"] == "FIFO Sampler (all-in-one)"


def test_fifo_sigmas_are_the_official_grid(host, setup):
    sigmas = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSigmas"].execute(setup["model"], 16, 4).result[0]
    sampling = setup["model"].get_model_object("model_sampling")
    assert sigmas.shape == (65,) and float(sigmas[-1]) == 0.0
    timesteps = sampling.timestep(sigmas[:-1]).flip(0)
    assert timesteps[:6].tolist() == [0, 16, 32, 48, 63, 79] and int(timesteps[-1]) == 999


# ---------------------------------------------------------------- ComfyUI paths reproduce the core

@pytest.mark.parametrize("rescale", [False, True])
def test_sampler_custom_advanced_matches_the_core(host, setup, rescale):
    """eta 0, base clip sampled by the sampler (VideoCrafter2's rescaled DDIM through the guider), f=8, n=2.
    The MODEL keeps its rescaled model sampling: the FIFO step is plain DDIM all the same, unless
    rescale_steps asks for VideoCrafter2's rescaled steps."""
    frames, seed = 2, 42
    inputs = sampler_inputs(rescale_steps=rescale)
    out, denoised = run_custom_advanced(host, setup, inputs, frames, seed)
    samples = out["samples"]
    assert samples.shape == (frames, *setup["frame_shape"])
    assert torch.equal(denoised["samples"], samples)
    options = fifo.FifoOptions(8, 2, True, 0.0, rescale=rescale)
    expected = fifo.fifo_generate(core_model(setup, 8),
                                  fifo.FifoRun(options, frames, setup["frame_shape"], fifo.GeneratorNoise(seed)))
    compare(f"SamplerCustomAdvanced eta0 rescale {rescale} vs core", setup["model"].model.process_latent_in(samples),
            expected)
    if rescale:
        official = fifo.fifo_generate(core_model(setup, 8), fifo.FifoRun(fifo.FifoOptions(8, 2, True, 0.0), frames,
                                                                           setup["frame_shape"], fifo.GeneratorNoise(seed)))
        assert (official - expected).abs().max() > 100 * RELATIVE_TOLERANCE * expected.abs().max()


def test_device_groups_give_the_one_device_frames(host, setup, monkeypatch):
    """devices 'cpu,cpu': every model call's windows split over two groups below the guider. With window_batch 2
    (the 2 windows of f 8, n 1, lookahead) each group's UNet call holds one window, as window_batch 1 on one device, so
    the frames are equal bit for bit (eta 1: the noise is the seed's either way). Then the replica path (a group on
    a device that is not the model's; this machine has only a CPU, so every device is declared different)."""
    import sys
    frames, seed = 2, 5
    one = run_custom_advanced(host, setup, sampler_inputs(eta=1.0, num_partitions=1, window_batch=1), frames,
                              seed)[0]["samples"]
    # the modules of the pack copy the host loaded (its nodes use them, not the `fifo_infinity` alias's)
    node_sampler = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSampler"].execute(**sampler_inputs()).result[0]
    bridge = sys.modules[type(node_sampler).__module__]
    device_groups = sys.modules[bridge.__name__.rsplit(".", 1)[0] + ".device_groups"]
    calls = []
    original = bridge.run_on_groups
    monkeypatch.setattr(bridge, "run_on_groups", lambda *args, **kwargs: calls.append(args[3]) or original(*args, **kwargs))
    grouped = run_custom_advanced(host, setup, sampler_inputs(eta=1.0, num_partitions=1, window_batch=2,
                                                              devices="cpu,cpu"), frames, seed)[0]["samples"]
    assert set(calls) == {1, 2}       # the base clip's calls (one window), then two windows per call
    assert torch.equal(grouped, one)
    monkeypatch.setattr(device_groups, "same_device", lambda a, b: False)
    replicas = run_custom_advanced(host, setup, sampler_inputs(eta=1.0, num_partitions=1, window_batch=2,
                                                               devices="cpu,cpu"), frames, seed)[0]["samples"]
    compare("FIFO on two UNet replicas vs one device", replicas, one)


def test_bad_devices_are_refused_before_sampling(host):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSampler"]
    assert "'cuda:9' does not exist" in node.validate_inputs(eta=1.0, devices="cuda:9")
    assert "torchrun" in node.validate_inputs(eta=1.0, devices="distributed")
    assert node.validate_inputs(eta=1.0, devices="cpu,cpu") is True
    with pytest.raises(ValueError, match="'potato' is not a torch device name"):
        node.execute(**sampler_inputs(devices="potato"))
    all_in_one = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSamplerAllInOne"]
    assert "'cuda:9' does not exist" in all_in_one.validate_inputs(devices="cuda:9")


def test_all_in_one_with_a_base_clip_matches_the_core(host, setup, reference, monkeypatch):
    """eta 1 (seeded step noise), the reference base clip as LATENT, window_batch 1, uniform queue init; the
    memory estimate is capped to one window batch."""
    import comfy.sampler_helpers
    shapes = []
    estimate = comfy.sampler_helpers.estimate_memory
    monkeypatch.setattr(comfy.sampler_helpers, "estimate_memory",
                        lambda model, noise_shape, conds: shapes.append(list(noise_shape)) or estimate(model, noise_shape, conds))
    base = to_frames(reference["base.eta1.latents"])                        # model space, f frames
    f = base.shape[0]
    frames, seed = f + 4, 5
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSamplerAllInOne"]
    out = node.execute(setup["model"], setup["positive"], setup["negative"], frames, setup["width"], setup["height"],
                       seed, setup["cfg"], f, 1, True, 1.0, 1, "uniform", setup["fps"],
                       base_clip={"samples": setup["model"].model.process_latent_out(base)}).result[0]
    assert shapes == [[f, *setup["frame_shape"]]], shapes                  # one window, not all N frames
    options = fifo.FifoOptions(f, 1, True, 1.0, window_batch=1, queue_init="uniform")
    expected = fifo.fifo_sample(core_model(setup, f), fifo.FifoRun(options, frames, base.shape[1:], fifo.GeneratorNoise(seed)),
                                base)
    assert out["samples"].shape == (frames, *setup["frame_shape"])
    compare("all-in-one eta1 with base clip vs core", setup["model"].model.process_latent_in(out["samples"]), expected)


@pytest.mark.slow
@pytest.mark.parametrize("path, eta", [("SamplerCustomAdvanced", 0), ("all-in-one", 1)])
def test_parity_fifo_through_comfyui(host, setup, reference, manifest, monkeypatch, path, eta):
    """The ComfyUI paths at the fixture's own settings (f, n, lookahead, N, cfg, fps from the manifest), from its
    base clip and with its recorded noise (queue set-up, DDIM step noise, appended frames), against the official
    popped latents `fifo.eta{eta}.popped` (the N output frames) and their decoded frames `fifo.eta{eta}.frames`."""
    from test_fifo_core import FixtureNoise
    settings = manifest["fifo"]
    f, n, frames = settings["video_length_f"], settings["num_partitions_n"], settings["new_frames_N"]
    nodes = host.NODE_CLASS_MAPPINGS
    # the noise source of the FIFO sampler as ComfyUI loaded the pack (its own module copy)
    sampler_class = sys.modules[nodes["FIFOInfinityFIFOSampler"].__module__].FifoSampler
    monkeypatch.setattr(sys.modules[sampler_class.__module__], "GeneratorNoise",
                        lambda seed, device=None: FixtureNoise(reference, eta))
    model = setup["model"]
    base = {"samples": model.model.process_latent_out(to_frames(reference[f"base.eta{eta}.latents"]))}
    if path == "SamplerCustomAdvanced":
        inputs = sampler_inputs(video_length=f, num_partitions=n, lookahead=settings["lookahead_denoising"],
                                eta=float(eta), base_clip=base)
        out, _ = run_custom_advanced(host, setup, inputs, frames, 0)
    else:
        out = nodes["FIFOInfinityFIFOSamplerAllInOne"].execute(model, setup["positive"], setup["negative"], frames, setup["width"],
                                                   setup["height"], 0, setup["cfg"], f, n,
                                                   settings["lookahead_denoising"], float(eta), 0, "official",
                                                   setup["fps"], base_clip=base).result[0]
    expected = to_frames(reference[f"fifo.eta{eta}.popped"])[-frames:]
    latents = model.model.process_latent_in(out["samples"])
    compare(f"{path} eta{eta} vs fifo.eta{eta}.popped", latents, expected)
    with torch.no_grad():
        decoded = setup["vae"].first_stage_model.decode(out["samples"].float())     # [-1, 1], not clamped
    compare(f"{path} eta{eta} decoded vs fifo.eta{eta}.frames", decoded, to_frames(reference[f"fifo.eta{eta}.frames"]))


def test_prompt_schedule_matches_the_core(host, setup, reference):
    """Two prompts with a 1-frame transition: the queue's conditioning per iteration is the core's mix."""
    nodes = host.NODE_CLASS_MAPPINGS
    e = setup["embeddings"]
    first = nodes["FIFOInfinityFIFOPromptSchedule"].execute([[e[1:2], {"fps": setup["fps"]}]], 1, 0).result[0]
    chain = nodes["FIFOInfinityFIFOPromptSchedule"].execute([[e[2:3], {"fps": setup["fps"]}]], 2, 1, previous=first).result[0]
    base = to_frames(reference["base.eta0.latents"])[:8]
    frames, seed = 3, 9
    inputs = sampler_inputs(num_partitions=1, prompt_schedule=chain,
                            base_clip={"samples": setup["model"].model.process_latent_out(base)})
    out, _ = run_custom_advanced(host, setup, inputs, frames, seed)
    options = fifo.FifoOptions(8, 1, True, 0.0)
    model = core_model(setup, 8, conds=[e[1:2], e[2:3]])
    expected = fifo.fifo_sample(model, fifo.FifoRun(options, frames, base.shape[1:], fifo.GeneratorNoise(seed),
                                             prompt_schedule=schedule.PromptSchedule((1, 2), transition=(1,))), base)
    compare("prompt schedule vs core", setup["model"].model.process_latent_in(out["samples"]), expected)
    single = fifo.fifo_sample(core_model(setup, 8), fifo.FifoRun(options, frames, base.shape[1:], fifo.GeneratorNoise(seed)),
                              base)
    assert (single - expected).abs().max() > 1e-3     # the schedule did change the video


# ---------------------------------------------------------------- progress, interruption

def test_progress_counts_frames_and_interruption_stops_within_one_call(host, setup, reference, monkeypatch):
    """Callbacks per iteration (popped frame as x0), the live queue messages for the web view, and the
    interrupt flag honoured before the next model call."""
    import comfy.model_management
    import comfy.patcher_extension
    import comfy.samplers
    import fifo_infinity.bridge.fifo as fifo_bridge
    from fifo_infinity.bridge.fifo import FifoSampler

    messages = []

    class FakeServer:
        client_id = "client"

        def send_sync(self, event, data, client):
            messages.append((event, data, client))

    class RecordingProgress(fifo_bridge.QueueProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.server, self.interval = FakeServer(), 0.0

    monkeypatch.setattr(fifo_bridge, "QueueProgress", RecordingProgress)
    base = to_frames(reference["base.eta0.latents"])[:8]
    options = fifo.FifoOptions(8, 1, True, 0.0, window_batch=1)
    sampler = FifoSampler(options, setup["model"].model.process_latent_out(base), node_id="7")
    sigmas = host.NODE_CLASS_MAPPINGS["FIFOInfinityFIFOSigmas"].execute(setup["model"], 8, 1).result[0]
    latent = torch.zeros(50, *setup["frame_shape"])
    calls, steps = [], []

    def count_calls(executor, *args, **kwargs):
        calls.append(len(steps))
        return executor(*args, **kwargs)

    model = setup["model"].clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "test_count", count_calls)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(setup["positive"], setup["negative"])
    guider.set_cfg(setup["cfg"])

    def callback(step, x0, x, total):
        steps.append((step, total, tuple(x0.shape)))
        if len(steps) == 3:
            comfy.model_management.interrupt_current_processing(True)

    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            guider.sample(torch.zeros_like(latent), latent, sampler, sigmas, callback=callback, seed=1)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert steps == [(i, 50, (1, *setup["frame_shape"])) for i in range(3)]
    assert calls.count(3) == 0              # no model call after the interrupt flag was set
    assert sorted(set(calls)) == [0, 1, 2]   # the three iterations before it ran
    assert [m[1]["iteration"] for m in messages] == [0, 1, 2]
    event, data, client = messages[0]
    assert event == "fifo_infinity.queue" and client == "client" and data["node"] == "7"
    assert len(data["timesteps"]) == options.queue_length and data["timesteps"][-1] == 999
    assert data["popped_slot"] == options.head and data["frames_total"] == 50 and data["iterations"] == 50
    assert data["windows"] == [[w.start, w.end] for w in options.windows()]


# ---------------------------------------------------------------- errors name the value

def test_loaded_models_estimate_fifo_memory_for_one_window_batch(host, monkeypatch):
    """The loader registers the FIFO memory cap, so SamplerCustomAdvanced + FIFO Sampler on a 40-frame latent asks
    ComfyUI for the memory of one window batch (2n = 2 lookahead windows of f = 4: 8 frames), not of all 40; a stock
    sampler on the same model still estimates for its whole latent."""
    import comfy.sampler_helpers
    nodes = host.NODE_CLASS_MAPPINGS
    model, clip, _, _ = nodes["FIFOInfinityCheckpointLoader"].execute("fifo_infinity_tiny_vc2.safetensors").result
    shapes = []
    original = comfy.sampler_helpers._prepare_sampling

    def record(model, noise_shape, *args, **kwargs):
        shapes.append(tuple(noise_shape))
        return original(model, noise_shape, *args, **kwargs)
    monkeypatch.setattr(comfy.sampler_helpers, "_prepare_sampling", record)
    cond = nodes["CLIPTextEncode"]().encode(clip, "a red ball")[0]
    guider = nodes["CFGGuider"].execute(model, cond, cond, 1.0).result[0]
    sampler = nodes["FIFOInfinityFIFOSampler"].execute(**sampler_inputs(video_length=4, num_partitions=1)).result[0]
    sigmas = nodes["FIFOInfinityFIFOSigmas"].execute(model, 4, 1).result[0]
    latent = nodes["FIFOInfinityEmptyVideoLatent"].execute(64, 64, 40).result[0]
    noise = nodes["RandomNoise"].execute(1).result[0]
    out = nodes["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent).result[0]
    assert out["samples"].shape == (40, 4, 8, 8)
    assert shapes == [(8, 4, 8, 8)], shapes
    nodes["KSampler"]().sample(model, 1, 1, 1.0, "euler", "normal", cond, cond,
                               nodes["FIFOInfinityEmptyVideoLatent"].execute(64, 64, 12).result[0], 1.0)
    assert shapes[-1] == (12, 4, 8, 8)


def test_memory_estimate_under_torch_distributed_is_one_ranks_share(host, monkeypatch):
    """Under torch.distributed a rank's calls hold only its share of the windows, so the memory cap asks for that:
    4 windows of f = 4 (n 2, lookahead) over 3 ranks = 2 windows per call at most (window_batch 0)."""
    import torch.distributed
    from fifo_infinity.bridge import fifo as bridge
    from fifo_infinity.samplers.fifo import FifoOptions
    options = FifoOptions(video_length=4, num_partitions=2)
    assert bridge.FifoSampler(options).frames_per_call == 16
    monkeypatch.setattr(bridge, "distributed_ready", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 3)
    assert bridge.FifoSampler(options).frames_per_call == 8
    assert bridge.FifoSampler(FifoOptions(video_length=4, num_partitions=2, window_batch=1)).frames_per_call == 4
    assert bridge.FifoSampler(options, devices="cpu,cpu").frames_per_call == 16      # a device list: not distributed


def test_bad_node_inputs_give_clear_errors(host, setup, reference):
    nodes = host.NODE_CLASS_MAPPINGS
    all_in_one, sampler = nodes["FIFOInfinityFIFOSamplerAllInOne"], nodes["FIFOInfinityFIFOSampler"]
    # validators name only what ComfyUI's own per-input range check misses: NaN / inf, and sizes
    assert "width = 100" in all_in_one.validate_inputs(width=100)
    assert "width = 0 is outside its range" in all_in_one.validate_inputs(width=0)
    assert "cfg = nan is not a finite number" in all_in_one.validate_inputs(cfg=float("nan"))
    assert "eta = 5.0 is outside its range: use a number from 0.0 to 1.0" in sampler.validate_inputs(eta=5.0)
    assert all_in_one.validate_inputs(width=512, height=320, cfg=12.0, eta=1.0) is True
    assert all_in_one.validate_inputs(width=None, height=None, cfg=None, eta=None) is True     # linked inputs
    # rules across inputs, and the ranges of linked inputs, when the node runs (before any sampling)
    with pytest.raises(ValueError, match="video_length f = 15 is odd"):
        sampler.execute(**sampler_inputs(video_length=15, lookahead=True))
    sampler.execute(**sampler_inputs(video_length=15, lookahead=False))
    with pytest.raises(ValueError, match="num_partitions = 0 is outside its range"):
        sampler.execute(**sampler_inputs(num_partitions=0))
    with pytest.raises(ValueError, match="frames = 1000000000 is outside its range"):
        all_in_one.execute(setup["model"], setup["positive"], setup["negative"], 10 ** 9, setup["width"],
                           setup["height"], 0, setup["cfg"], 8, 1, True, 0.0, 0, "official", 8)

    base = {"samples": torch.zeros(12, *setup["frame_shape"])}
    with pytest.raises(ValueError, match="base clip has 12 frames but video_length f = 16"):
        sampler.execute(**sampler_inputs(video_length=16, base_clip=base))
    wrong_size = {"samples": torch.zeros(8, 4, 4, 4)}
    # errors raised inside ComfyUI come from the pack as ComfyUI loaded it (another module copy): match ValueError
    with pytest.raises(ValueError, match=r"4x4x4 .* " + "x".join(map(str, setup["frame_shape"]))):
        run_custom_advanced(host, setup, sampler_inputs(base_clip=wrong_size), 2, 0)
    with pytest.raises(ValueError, match=r"set width and height to 32x32"):
        all_in_one.execute(setup["model"], setup["positive"], setup["negative"], 3, setup["width"], setup["height"], 0,
                           setup["cfg"], 8, 1, True, 0.0, 0, "official", 8, base_clip=wrong_size)

    short = nodes["FIFOInfinityFIFOPromptSchedule"].execute(setup["positive"], 2, 0).result[0]
    short = nodes["FIFOInfinityFIFOPromptSchedule"].execute(setup["positive"], 3, 0, previous=short).result[0]
    with pytest.raises(ValueError, match=r"sum to 5 \(2 \+ 3\), fewer than the 7 frames"):
        run_custom_advanced(host, setup, sampler_inputs(prompt_schedule=short), 7, 0)

    guider = nodes["CFGGuider"].execute(setup["model"], setup["positive"], setup["negative"], 1.0).result[0]
    wrong_sigmas = nodes["BasicScheduler"].execute(setup["model"], "simple", 10, 1.0).result[0]
    latent = nodes["FIFOInfinityEmptyVideoLatent"].execute(setup["width"], setup["height"], 2).result[0]
    with pytest.raises(ValueError, match=r"sigmas has 10 steps .* f \* n = 8 \* 2 = 16"):
        nodes["SamplerCustomAdvanced"].execute(nodes["RandomNoise"].execute(0).result[0], guider,
                                               sampler.execute(**sampler_inputs()).result[0], wrong_sigmas, latent)


# ---------------------------------------------------------------- the example workflow over HTTP

def fifo_prompt(frames, seed=1, **fifo_inputs):
    """The API twin of example_workflows/fifo_long_video.json on the tiny model, with small FIFO settings."""
    from conftest import load_api_workflow
    prompt = load_api_workflow("fifo_long_video.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    width, height = frame_size()
    prompt["4"]["inputs"].update(frames=frames, width=width, height=height, video_length=8, num_partitions=1, seed=seed)
    prompt["4"]["inputs"].update(fifo_inputs)
    return prompt


def test_example_workflow_matches_the_brief():
    from conftest import load_api_workflow
    prompt = load_api_workflow("fifo_long_video.json")
    types = [prompt[k]["class_type"] for k in sorted(prompt, key=int)]
    assert types == ["FIFOInfinityCheckpointLoader", "CLIPTextEncode", "CLIPTextEncode", "FIFOInfinityFIFOSamplerAllInOne",
                     "VAEDecode", "SaveAnimatedWEBP"]


def test_example_workflow_writes_n_frames_over_http(server):
    from PIL import Image
    entry = server.wait(server.queue(fifo_prompt(frames=5)), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    files = server.output_files(entry, "6")
    assert len(files) == 1
    with Image.open(files[0]) as image:
        assert image.n_frames == 5
        assert image.size == frame_size()


def test_multi_prompt_example_writes_the_scheduled_video_over_http(server):
    """example_workflows/fifo_multi_prompt.json (bundled model, three prompts, Save Video (streaming)), shorter:
    24 frames, 8 per prompt with a 4-frame transition, f 8, n 2."""
    import av
    from conftest import load_api_workflow
    prompt = load_api_workflow("fifo_multi_prompt.json")
    for node in ("6", "7", "8"):
        prompt[node]["inputs"].update(frames=8, transition=0 if node == "6" else 4)
    prompt["9"]["inputs"].update(frames=24, video_length=8, num_partitions=2)
    entry = server.wait(server.queue(prompt), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (path,) = server.output_files(entry, "10")
    with av.open(path) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 24 and frames[0].shape == (64, 64, 3)
    short = load_api_workflow("fifo_multi_prompt.json")
    short["9"]["inputs"].update(frames=200, video_length=8, num_partitions=2)        # the schedule covers 192
    response = server.post_prompt(short)
    entry = server.wait(response.json()["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "error" and "192" in str(entry["status"]["messages"])


def test_bad_fifo_inputs_are_refused_over_http(server):
    """Out-of-range integers get ComfyUI's own per-input error (HTTP 400); NaN and sizes get ours (HTTP 400);
    a rule across inputs (odd f with lookahead) fails the node when it runs, before any sampling."""
    for inputs, name, words in ((dict(frames=0), "frames", "smaller than min of 1"),
                                (dict(num_partitions=0), "num_partitions", "smaller than min of 1"),
                                (dict(width=0), "width", "width = 0 is outside its range"),
                                (dict(cfg="NaN"), "cfg", "cfg = nan is not a finite number")):
        response = server.post_prompt(fifo_prompt(**{"frames": 4, **inputs}))
        assert response.status_code == 400, inputs
        errors = response.json()["node_errors"]["4"]
        assert errors["class_type"] == "FIFOInfinityFIFOSamplerAllInOne"
        assert words in str(errors["errors"]), errors
        assert name in {error["extra_info"]["input_name"] for error in errors["errors"]}
    entry = server.wait(server.queue(fifo_prompt(frames=4, video_length=15)), timeout=120)
    assert entry["status"]["status_str"] == "error" and "video_length f = 15 is odd" in str(entry["status"])


def test_interrupt_stops_fifo_and_the_server_answers_the_next_prompt(server):
    import time
    prompt_id = server.queue(fifo_prompt(frames=5000, seed=2))      # hours of work on this CPU
    deadline = time.time() + 300
    while time.time() < deadline:
        running = [item[1] for item in server.get("/queue")["queue_running"]]
        if prompt_id in running:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the long FIFO prompt never started")
    time.sleep(8)                       # model loaded, text encoded, FIFO iterations under way
    start = time.time()
    server.interrupt()
    entry = server.wait(prompt_id, timeout=300)
    stopped_after = time.time() - start
    print(f"\n[fifo server] interrupt answered after {stopped_after:.1f} s")
    assert entry["status"]["status_str"] == "error"
    assert any(message[0] == "execution_interrupted" for message in entry["status"]["messages"]), entry["status"]
    assert stopped_after < 60
    follow_up = server.wait(server.queue(fifo_prompt(frames=2, seed=3)), timeout=900)
    assert follow_up["status"]["status_str"] == "success", follow_up["status"]
