"""Patches compose: the weighted Q-cache on a Video-Infinity model (stock KSampler) and with the FIFO sampler."""

import os

import pytest
import safetensors.torch
import torch
from test_fifo_core import CfgUNet
from test_fifo_host import compare, run_custom_advanced, sampler_inputs
from test_fifo_host import setup, stages  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def conds(reference_dir):
    embeddings = safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))["text.embeddings"]
    return [[embeddings[1:2], {}]], [[embeddings[0:1], {}]]


def sample(host, model, conds, frames=16, steps=2):
    from conftest import fixture_manifest
    latent = {"samples": torch.zeros(frames, 4, *fixture_manifest()["latent_hw"])}
    return host.NODE_CLASS_MAPPINGS["KSampler"]().sample(model, 7, steps, 12.0, "euler", "normal", conds[0], conds[1],
                                                         latent, 1.0)[0]["samples"]


def video_infinity(host, model, frames_per_clip=8):
    nodes = host.NODE_CLASS_MAPPINGS
    defaults = {name: entry[1].get("default") for name, entry in nodes["FIFOInfinityVideoInfinityContext"].INPUT_TYPES()["required"].items()}
    defaults.update(frames_per_clip=frames_per_clip, padding=2, global_frames=4)
    context = nodes["FIFOInfinityVideoInfinityContext"].execute(**defaults).result[0]
    return nodes["FIFOInfinityApplyVideoInfinity"].execute(model, context).result[0]


def qcache(host, model, weight):
    return host.NODE_CLASS_MAPPINGS["FIFOInfinityWeightedQCache"].execute(
        model, weight, "attn1", "temporal", "all", 0.0, 1.0).result[0]


def test_qcache_on_a_video_infinity_model(host, tiny_model, conds):
    """Q-cache before or after Apply Video-Infinity: weight 0 changes nothing bit for bit, weight 0.9 changes
    the 2-clip video, and the order of the two patches does not matter."""
    base = tiny_model[0]
    plain = sample(host, video_infinity(host, base), conds)
    assert torch.equal(sample(host, video_infinity(host, qcache(host, base, 0.0)), conds), plain)
    first = sample(host, video_infinity(host, qcache(host, base, 0.9)), conds)
    second = sample(host, qcache(host, video_infinity(host, base), 0.9), conds)
    assert not torch.allclose(first, plain, atol=1e-4)
    assert torch.allclose(first, second, atol=1e-5)
    assert torch.isfinite(first).all()


def test_qcache_with_the_fifo_sampler(host, setup):
    """Q-cache + FIFO: through SamplerCustomAdvanced the patched model gives what the pure FIFO core gives with
    the same Q-cache patch in the UNet's transformer_options (every window, per-frame timesteps, both CFG
    branches in one batch); weight 0 is bit-identical to the unpatched FIFO run; weight 0.9 changes the video."""
    from fifo_infinity.samplers import fifo
    frames, seed = 3, 5
    inputs = sampler_inputs(eta=1.0)
    plain, _ = run_custom_advanced(host, setup, inputs, frames, seed)
    zero, _ = run_custom_advanced(host, setup, inputs, frames, seed, model=qcache(host, setup["model"], 0.0))
    assert torch.equal(zero["samples"], plain["samples"])
    patched = qcache(host, setup["model"], 0.9)
    blended, _ = run_custom_advanced(host, setup, inputs, frames, seed, model=patched)
    assert not torch.allclose(blended["samples"], plain["samples"], atol=1e-4)

    class PatchedCfgUNet(CfgUNet):
        def __call__(self, x, timesteps, mix=((0, 1.0),)):
            n = x.shape[0]
            context = torch.cat([self.conds[0].expand(n, -1, -1), self.uncond.expand(n, -1, -1)])
            options = {"video_length": self.video_length,
                       "patches": patched.model_options["transformer_options"]["patches"]}
            e = self.unet(torch.cat([x, x]), torch.cat([timesteps, timesteps]).float(), context=context,
                          transformer_options=options, fps=torch.full((2 * n,), float(self.fps)))
            e_c, e_u = e[:n], e[n:]
            return e_u + self.cfg * (e_c - e_u)

    core = PatchedCfgUNet(setup["model"].model.diffusion_model, [setup["embeddings"][1:2]], setup["embeddings"][0:1],
                          setup["cfg"], setup["fps"], 8)
    with torch.no_grad():
        expected = fifo.fifo_generate(core, fifo.FifoRun(fifo.FifoOptions(8, 2, True, 1.0), frames, setup["frame_shape"],
                                                          fifo.GeneratorNoise(seed)))
    compare("Q-cache 0.9 + FIFO vs core with the patch", setup["model"].model.process_latent_in(blended["samples"]),
            expected)
