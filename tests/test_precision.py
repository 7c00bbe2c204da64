"""Half precision and fp8 storage on the CPU, through the real host (issue "Faster than the official FIFO ...").

The tiny reference VideoCrafter2 is loaded with each of the loader's weight dtypes and a compute dtype
(`load_videocrafter(dtype=..., compute_dtype=...)`, the host's manual cast) and runs the stock KSampler, the
FIFO sampler (SamplerCustomAdvanced + CFGGuider), FIFO with the weighted Q-cache, and Video-Infinity. Each
must run without a dtype error, give finite latents in the fp32 run's shape, and stay within a stated
relative error of the fp32 run: max |x - x_fp32| / max |x_fp32| (the figures are printed with `-s` and
written in the README, "Half precision and fp8").
"""

import sys

import pytest
import torch

from test_fifo_host import run_custom_advanced, sampler_inputs
from video_infinity_support import UNET_CLIP_FRAMES, UNET_CLIPS, unet_options

# (weight dtype name, compute dtype, relative tolerance against fp32). Measured on the CPU (README, "Half
# precision and fp8"), largest over the four paths: bf16 5.2e-2, fp16 8.5e-3, fp8_e4m3fn 8.4e-2, fp8_e5m2 1.5e-1
# (Video-Infinity the largest each time); the bounds leave a margin of about 3x.
CASES = [
    ("bf16", torch.bfloat16, 0.15),
    ("fp16", torch.float16, 0.03),
    ("fp8_e4m3fn", torch.bfloat16, 0.25),
    ("fp8_e5m2", torch.bfloat16, 0.45),
]


@pytest.fixture(scope="module")
def models(host, tiny_checkpoint, manifest):
    """{name: (MODEL, CLIP)}: fp32 and every case's weight / compute dtype."""
    from fifo_infinity.videocrafter.loader import load_videocrafter, weight_dtype_of
    heads = manifest["text_encoder"]["heads"]
    loaded = {"fp32": load_videocrafter(tiny_checkpoint, text_heads=heads, dtype=torch.float32)}
    for name, compute, _ in CASES:
        loaded[name] = load_videocrafter(tiny_checkpoint, text_heads=heads, dtype=weight_dtype_of(name),
                                         compute_dtype=compute)
    return {name: (parts[0], parts[1]) for name, parts in loaded.items()}


@pytest.fixture(scope="module")
def conds(host, models, manifest):
    clip = models["fp32"][1]
    encode = host.NODE_CLASS_MAPPINGS["CLIPTextEncode"]().encode
    fps = manifest["fifo"]["fps"]
    positive, negative = encode(clip, "a red ball bouncing")[0], encode(clip, "")[0]
    return ([[positive[0][0], {"fps": fps}]], [[negative[0][0], {"fps": fps}]])


def stock_ksampler(host, model, conds, manifest):
    h, w = manifest["latent_hw"]
    latent = {"samples": torch.zeros(8, 4, h, w)}
    return host.NODE_CLASS_MAPPINGS["KSampler"]().sample(model, 7, 3, 7.5, "euler", "normal", conds[0], conds[1],
                                                         latent)[0]["samples"]


def fifo(host, model, conds, manifest):
    h, w = manifest["latent_hw"]
    setup = dict(model=model, positive=conds[0], negative=conds[1], cfg=manifest["fifo"]["cfg_scale"],
                 width=w * 8, height=h * 8)
    return run_custom_advanced(host, setup, sampler_inputs(), 2, 42)[0]["samples"]


def fifo_with_query_cache(host, model, conds, manifest):
    from fifo_infinity.bridge.qcache import apply_query_cache
    return fifo(host, apply_query_cache(model, 0.25)[0], conds, manifest)


def video_infinity(host, model, conds, manifest):
    mappings = host.NODE_CLASS_MAPPINGS
    h, w = manifest["latent_hw"]
    latent = {"samples": torch.zeros(UNET_CLIPS * UNET_CLIP_FRAMES, 4, h, w)}
    patched = mappings["FIFOInfinityApplyVideoInfinity"].execute(model, unet_options(), "").result[0]
    guider = mappings["CFGGuider"].execute(patched, conds[0], conds[1], 7.5).result[0]
    sampler = mappings["KSamplerSelect"].execute("euler").result[0]
    sigmas = mappings["BasicScheduler"].execute(patched, "normal", 3, 1.0).result[0]
    noise = mappings["RandomNoise"].execute(5).result[0]
    return mappings["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent).result[0]["samples"]


PATHS = {"stock KSampler": stock_ksampler, "FIFO": fifo, "FIFO + Q-cache": fifo_with_query_cache,
         "Video-Infinity": video_infinity}
_FP32 = {}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name,compute,tolerance", CASES, ids=[case[0] for case in CASES])
def test_half_precision_and_fp8_runs_near_fp32(host, models, conds, manifest, path, name, compute, tolerance):
    model = models[name][0]
    unet = model.model.diffusion_model
    assert (model.model.manual_cast_dtype or model.model.get_dtype()) == compute             # computes in that dtype
    from fifo_infinity.videocrafter.loader import weight_dtype_of
    assert unet.input_blocks[1][0].in_layers[2].weight.dtype == weight_dtype_of(name)      # stored in that dtype
    if path not in _FP32:
        _FP32[path] = PATHS[path](host, models["fp32"][0], conds, manifest)
    expected = _FP32[path]
    got = PATHS[path](host, model, conds, manifest)
    assert got.shape == expected.shape and torch.isfinite(got).all()
    error = ((got.float() - expected).abs().max() / expected.abs().max()).item()
    print(f"\n[precision] {path}, weights {name}, compute {compute}: relative error against fp32 {error:.2e}")
    assert error <= tolerance, f"{path} in {name}: relative error {error:.3g} over {tolerance}"


def test_loader_node_takes_the_weight_dtypes_and_refuses_others(host, tiny_checkpoint, monkeypatch):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityCheckpointLoader"]
    node_loader = sys.modules[node.__module__]
    monkeypatch.setattr(node_loader, "resolve_checkpoint", lambda name: tiny_checkpoint)
    schema = node.GET_SCHEMA() if hasattr(node, "GET_SCHEMA") else node.define_schema()
    weight_input = next(i for i in schema.inputs if i.id == "weight_dtype")
    assert weight_input.options == ["default", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"] and weight_input.optional
    model = node.execute("tiny", True, "fp8_e5m2").result[0]
    assert model.model.diffusion_model.out[2].weight.dtype == torch.float8_e5m2
    with pytest.raises(ValueError, match=r"weight_dtype: 'fp4' is not one of \['default', 'fp16'"):
        node.execute("tiny", True, "fp4")
