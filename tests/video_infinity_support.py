"""Helpers for the Video-Infinity tests: the reference cases, our modules loaded with the fixture weights, one
case through a transport, one patched-UNet forward, and the workers spawned for torch.distributed (gloo).

Everything about the fixture (cases, sizes, heads, phases, conv context) is read from its
`video_infinity.json`, so other fixture sets of the same format are checked unchanged.
"""

from __future__ import annotations

import json
import os
import sys

import torch

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PACK_DIR = os.path.dirname(TESTS_DIR)


# ---------------------------------------------------------------------------------------------------
# Reference fixture
# ---------------------------------------------------------------------------------------------------

def load_reference(reference_dir: str):
    """(metadata, tensors) of the video_infinity fixture folder."""
    import safetensors.torch
    with open(os.path.join(reference_dir, "video_infinity.json")) as f:
        meta = json.load(f)
    return meta, safetensors.torch.load_file(os.path.join(reference_dir, "video_infinity.safetensors"))


def case_options(meta: dict, case: dict):
    from fifo_infinity.attention.video_infinity import Phase, VideoInfinityOptions

    def phase(entry):
        return Phase(entry["t"], float(entry["local_biase"]), float(entry["global_biase"]))

    return VideoInfinityOptions(frames_per_clip=case["frames_per_clip"], padding=case["padding"],
                                global_frames=case["top_k"], local_phase=phase(meta["local_phase"]),
                                global_phase=phase(meta["global_phase"]), token_num_scale=case["token_num_scale"],
                                conv_context_frames=meta["conv_context_frames"])


def reference_modules(meta: dict, tensors: dict):
    """Our TemporalAttention and TemporalConvBlock with the fixture's weights (fp32, eval)."""
    import comfy.ops
    from fifo_infinity.videocrafter.unet import TemporalAttention, TemporalConvBlock
    channels, heads = meta["channels"], meta["heads"]
    ops = comfy.ops.disable_weight_init
    attention = TemporalAttention(channels, heads, channels // heads, "attn1", operations=ops)
    attention.load_state_dict(_prefixed(tensors, "weights.attn."), strict=True)
    conv = TemporalConvBlock(channels, operations=ops)
    conv.load_state_dict(_prefixed(tensors, "weights.conv."), strict=True)
    return attention.eval(), conv.eval()


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def run_case(case: dict, meta: dict, tensors: dict, modules, transport, options=None):
    """(attn_out, conv_out) of one fixture case computed by our modules through `transport`, in the fixture's
    layouts (`[N, W*F, C]` and `[b, C, W*F, h, w]`)."""
    from fifo_infinity.bridge import video_infinity as glue
    attention, conv = modules
    options = options or case_options(meta, case)
    name, f, clips = case["name"], case["frames_per_clip"], case["clips"]
    attn_in, conv_in = tensors[f"{name}.attn_in"], tensors[f"{name}.conv_in"]
    positions, channels = attn_in.shape[0], attn_in.shape[2]
    batch, spatial = conv_in.shape[0], tuple(conv_in.shape[3:])

    def extra(endpoint, chunks):
        options_here = glue.install({}, options)
        options_here[glue.CALL_KEY] = glue.ClipCall(options, endpoint, chunks)
        options_here["timesteps"] = torch.full((chunks * endpoint.local_clips * f,), float(case["timestep"]))
        return options_here

    def attention_work(endpoint):
        a, b = endpoint.first_clip, endpoint.first_clip + endpoint.local_clips
        x = attn_in.view(positions, clips, f, channels)[:, a:b].permute(1, 0, 2, 3).reshape(-1, f, channels)
        with torch.no_grad():
            y = attention(x.to(endpoint.device), extra(endpoint, 1))
        return y.view(1, b - a, positions, f, channels)

    def conv_work(endpoint):
        a, b = endpoint.first_clip, endpoint.first_clip + endpoint.local_clips
        x = conv_in.view(batch, channels, clips, f, *spatial)[:, :, a:b].transpose(1, 2)
        with torch.no_grad():
            y = conv(x.reshape(batch * (b - a), channels, f, *spatial).to(endpoint.device), extra(endpoint, batch))
        return y.view(batch, b - a, channels, f, *spatial)

    cpu = torch.device("cpu")
    attn = torch.cat(transport.run(clips, attention_work, cpu), 1)[0].permute(1, 0, 2, 3).reshape(attn_in.shape)
    conv_out = torch.cat(transport.run(clips, conv_work, cpu), 1).transpose(1, 2).reshape(conv_in.shape)
    return attn, conv_out


# ---------------------------------------------------------------------------------------------------
# The patched tiny UNet
# ---------------------------------------------------------------------------------------------------

UNET_CLIP_FRAMES, UNET_CLIPS = 4, 3


def unet_options(sync_group_norm=False):
    from fifo_infinity.attention.video_infinity import VideoInfinityOptions
    return VideoInfinityOptions(frames_per_clip=UNET_CLIP_FRAMES, padding=2, global_frames=4, conv_context_frames=2,
                                sync_group_norm=sync_group_norm)


def unet_inputs(latent_hw, context_dim, clips=UNET_CLIPS, f=UNET_CLIP_FRAMES, seed=7):
    """cond+uncond batch of a long latent: x `[2*W*F, 4, h, w]`, per-frame timesteps (two noise levels, so
    both phases run), context `[2*W*F, 77, D]`."""
    generator = torch.Generator().manual_seed(seed)
    rows = 2 * clips * f
    x = torch.randn(rows, 4, *latent_hw, generator=generator)
    t = torch.tensor([900.0, 500.0]).repeat_interleave(rows // 2)
    context = torch.randn(rows, 77, context_dim, generator=generator)
    return x, t, context


def unet_forward(model, x, t, context):
    """One call of the (patched) diffusion model as ComfyUI's sampler makes it: the patcher's wrappers merged
    into transformer_options, cond and uncond stacked."""
    import comfy.patcher_extension as extension
    options = extension.copy_nested_dicts(model.model_options.get("transformer_options", {}))
    extension.merge_nested_dicts(options.setdefault("wrappers", {}), model.wrappers, copy_dict1=False)
    options["cond_or_uncond"] = [0, 1]
    with torch.no_grad():
        return model.model.diffusion_model(x, t, context=context, transformer_options=options)


# ---------------------------------------------------------------------------------------------------
# Spawned workers (torch.multiprocessing.spawn; gloo on the CPU)
# ---------------------------------------------------------------------------------------------------

def setup_worker(comfy_root: str):
    """Make ComfyUI and the pack importable in a spawned process (CPU only)."""
    torch.set_num_threads(1)
    if TESTS_DIR not in sys.path:
        sys.path.insert(0, TESTS_DIR)
    from conftest import bootstrap   # host_bootstrap.py, loaded by conftest
    bootstrap.use_comfyui(comfy_root)
    bootstrap.register_pack()        # the pack as `fifo_infinity`


def parity_worker(rank, world, init_method, comfy_root, reference_dir, out_dir):
    """Every fixture case through the distributed transport on every group of 1..world ranks (W >= ranks);
    rank 0 of each group saves the outputs to `out_dir/{case}.R{ranks}.safetensors`."""
    setup_worker(comfy_root)
    import safetensors.torch
    import torch.distributed as dist
    from fifo_infinity.parallel.transport import DistributedTransport
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    groups = {size: dist.new_group(list(range(size))) for size in range(1, world + 1)}
    meta, tensors = load_reference(reference_dir)
    modules = reference_modules(meta, tensors)
    for case in meta["cases"]:
        for size, group in groups.items():
            if rank >= size or case["clips"] < size:
                continue
            attn, conv = run_case(case, meta, tensors, modules, DistributedTransport(group))
            if rank == 0:
                safetensors.torch.save_file({"attn_out": attn.contiguous(), "conv_out": conv.contiguous()},
                                            os.path.join(out_dir, f"{case['name']}.R{size}.safetensors"))
    # ranks that disagree on the call (here: the clip count) must fail with a message, not hang
    from fifo_infinity.attention.video_infinity import VideoInfinityError
    message = "no error"
    try:
        DistributedTransport().run(world + rank, lambda endpoint: torch.zeros(1, endpoint.local_clips),
                                   torch.device("cpu"), signature=(1,))
    except VideoInfinityError as error:
        message = str(error)
    if rank == 0:
        with open(os.path.join(out_dir, "mismatch.txt"), "w") as f:
            f.write(message)
    dist.barrier()
    dist.destroy_process_group()


def unet_worker(rank, world, init_method, comfy_root, checkpoint, text_heads, latent_hw, context_dim, out_dir):
    """The patched tiny UNet with devices '' (auto: torch.distributed here), with and without synchronised
    GroupNorm; every rank saves what its call returned (the whole video's output)."""
    setup_worker(comfy_root)
    import safetensors.torch
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    from fifo_infinity.videocrafter.loader import load_videocrafter
    model = load_videocrafter(checkpoint, text_heads=text_heads, dtype=torch.float32)[0]
    x, t, context = unet_inputs(tuple(latent_hw), context_dim)
    outputs = {}
    for sync in (False, True):
        patched = apply_video_infinity(model, unet_options(sync), "")
        outputs[f"sync{int(sync)}"] = unet_forward(patched, x, t, context).contiguous()
    safetensors.torch.save_file(outputs, os.path.join(out_dir, f"unet.rank{rank}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


def spawn(worker, world: int, tmp_dir: str, *args):
    """Run `worker(rank, world, init_method, *args)` in `world` fresh processes joined by gloo (file:// init)."""
    import torch.multiprocessing as mp
    init = "file://" + os.path.join(tmp_dir, "rendezvous")
    mp.spawn(worker, args=(world, init) + tuple(args), nprocs=world, join=True)
