"""Patches compose: the weighted Q-cache on a Video-Infinity model, both through the stock KSampler."""

import os

import pytest
import safetensors.torch
import torch


@pytest.fixture(scope="module")
def conds(reference_dir):
    embeddings = safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))["text.embeddings"]
    return [[embeddings[1:2], {}]], [[embeddings[0:1], {}]]


def sample(host, model, conds, frames=16, steps=2):
    latent = {"samples": torch.zeros(frames, 4, 8, 16)}
    return host.NODE_CLASS_MAPPINGS["KSampler"]().sample(model, 7, steps, 12.0, "euler", "normal", conds[0], conds[1],
                                                         latent, 1.0)[0]["samples"]


def video_infinity(host, model, frames_per_clip=8):
    nodes = host.NODE_CLASS_MAPPINGS
    defaults = {name: entry[1].get("default") for name, entry in nodes["VideoInfinityContext"].INPUT_TYPES()["required"].items()}
    defaults.update(frames_per_clip=frames_per_clip, padding=2, global_frames=4)
    context = nodes["VideoInfinityContext"].execute(**defaults).result[0]
    return nodes["ApplyVideoInfinity"].execute(model, context).result[0]


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
