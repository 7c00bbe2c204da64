"""One UNet call split over in-process device groups: Video-Infinity's clips and FIFO's windows.

A DIFFUSION_MODEL wrapper (ComfyUI's `executor(*args, **kwargs)` convention, `executor.class_obj` = our UNet) gets
a batch `[chunks * units * unit_frames, C, h, w]`: `chunks` cond/uncond copies (ComfyUI's `cond_or_uncond`), each
`units` clips or windows of `unit_frames` frames. `run_on_groups` hands contiguous groups of units to a transport
(`parallel.transport`): each group's rows of every per-frame or per-video input are cut out, the group runs on its
device (the model's own device: the wrapped call; any other: a `DeviceReplicas` copy of the UNet) and the outputs
are put back in unit order. ComfyUI's guider, CFG and conds stay on the model's device, in one thread: only the UNet
runs in parallel. docs/video_infinity.md, "Where clips run"; docs/fifo.md, "Across devices and processes".
"""

from __future__ import annotations

import copy
import threading
from typing import Callable

import torch

from ..parallel.transport import Endpoint, InProcessTransport, Transport, same_device

GROUP_CALL_KEY = "fifo_infinity_group_call"
"""Set in the transformer_options of every group's call: a wrapper that splits calls passes such a call through
(a replica's forward runs the DIFFUSION_MODEL wrappers again)."""


def in_group_call(transformer_options: dict) -> bool:
    """Whether this UNet call is already one group's share of a split call."""
    return bool(transformer_options.get(GROUP_CALL_KEY))


class DeviceReplicas:
    """Copies of a UNet on other devices, made at first use and kept until `clear()` (one sampling): they copy the
    weights as loaded, LoRA patches included."""

    def __init__(self):
        self._replicas: dict = {}
        self._lock = threading.Lock()

    def get(self, unet: torch.nn.Module, device) -> torch.nn.Module:
        key = (id(unet), str(torch.device(device)))
        with self._lock:
            found = self._replicas.get(key)
            if found is None:
                found = self._replicas[key] = _copy_to(unet, torch.device(device))
            return found

    def clear(self) -> None:
        with self._lock:
            self._replicas.clear()


def run_on_groups(executor, transport: Transport, replicas: DeviceReplicas, units: int, unit_frames: int,
                  chunks: int, x: torch.Tensor, timesteps, context, control, transformer_options: dict, args: tuple,
                  kwargs: dict, call_options: Callable[[Endpoint], dict] | None = None) -> torch.Tensor:
    """The wrapped UNet call `executor(x, timesteps, context, control, transformer_options, *args, **kwargs)` with its
    `units` units split over `transport`'s participants; returns `[chunks * units * unit_frames, ...]` on x's device.

    Each participant's `transformer_options` get `video_length = unit_frames`, its own rows of a per-frame
    `sigmas`, and whatever `call_options(endpoint)` adds. Raises what the UNet or the transport raises.
    """
    rows = x.shape[0]
    unet = executor.class_obj
    if isinstance(transport, InProcessTransport):
        for device in transport.devices:
            if not same_device(device, x.device):
                replicas.get(unet, device)

    def work(endpoint: Endpoint):
        start, stop = endpoint.first_clip, endpoint.first_clip + endpoint.local_clips
        device = endpoint.device
        whole = start == 0 and stop == units and same_device(device, x.device)

        def take(t):
            if whole or not torch.is_tensor(t):
                return t
            return unit_rows(t, rows, chunks, units, unit_frames, start, stop).to(device)

        options_here = dict(transformer_options)
        options_here["video_length"] = unit_frames
        options_here[GROUP_CALL_KEY] = True
        if call_options is not None:
            options_here.update(call_options(endpoint))
        sigmas = options_here.get("sigmas")
        if not whole and torch.is_tensor(sigmas) and sigmas.shape[0] == units * unit_frames:
            options_here["sigmas"] = sigmas.unflatten(0, (units, unit_frames))[start:stop].flatten(0, 1).to(device)
        inputs = (take(x), take(timesteps), take(context))
        control_here = control if whole else _control_rows(control, take)
        extra = {key: take(value) for key, value in kwargs.items()}
        if same_device(device, x.device):
            out = executor(*inputs, control_here, options_here, *args, **extra)
        else:
            out = replicas.get(unet, device)(inputs[0], inputs[1], context=inputs[2], control=control_here,
                                             transformer_options=options_here, **extra)
        return out.unflatten(0, (chunks, stop - start, unit_frames))

    outputs = transport.run(units, work, x.device, signature=(rows, chunks, unit_frames) + tuple(x.shape[1:]))
    return outputs[0].flatten(0, 2) if len(outputs) == 1 else torch.cat(outputs, dim=1).flatten(0, 2)


def unit_rows(t: torch.Tensor, rows: int, chunks: int, units: int, unit_frames: int, start: int, stop: int):
    """The rows of units [start, stop) of a per-frame `[chunks * units * F, ...]` or per-video `[chunks * units, ...]`
    tensor; anything else (e.g. one value for all) is passed through."""
    if t.dim() == 0:
        return t
    if t.shape[0] == rows:
        return t.unflatten(0, (chunks, units, unit_frames))[:, start:stop].flatten(0, 2)
    if t.shape[0] == chunks * units and units > 1:
        return t.unflatten(0, (chunks, units))[:, start:stop].flatten(0, 1)
    return t


def _control_rows(control, take):
    """A ControlNet control dict with every tensor cut to the participant's rows (fresh lists: the UNet pops)."""
    if control is None:
        return None
    out = {}
    for key, value in control.items():
        if isinstance(value, list):
            out[key] = [take(v) if torch.is_tensor(v) else v for v in value]
        else:
            out[key] = take(value) if torch.is_tensor(value) else value
    return out


def _copy_to(module: torch.nn.Module, device: torch.device, memo: dict | None = None) -> torch.nn.Module:
    """A copy of `module` whose parameters and buffers are created directly on `device`, one tensor at a time.

    Module by module: each is a shallow copy with its own parameter, buffer and child tables, so other attributes
    (ComfyUI's weight functions, references to the patcher) are shared rather than deep-copied (during a sampling
    they reach the whole patcher, which a deepcopy would try to duplicate). Shared modules and tensors stay shared.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    copied = copy.copy(module)
    memo[id(module)] = copied
    with torch.no_grad():
        copied._parameters = {name: _tensor_to(p, device, memo, parameter=True) for name, p in module._parameters.items()}
        copied._buffers = {name: _tensor_to(b, device, memo) for name, b in module._buffers.items()}
    copied._modules = {name: None if child is None else _copy_to(child, device, memo)
                       for name, child in module._modules.items()}
    return copied


def _tensor_to(tensor, device, memo: dict, parameter: bool = False):
    if tensor is None:
        return None
    if id(tensor) not in memo:
        moved = tensor.detach().to(device)
        memo[id(tensor)] = torch.nn.Parameter(moved, requires_grad=tensor.requires_grad) if parameter else moved
    return memo[id(tensor)]
