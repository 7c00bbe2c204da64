"""FIFO state files: everything a FIFO run needs to continue exactly where it stopped (pure torch, no ComfyUI).

A state is taken between two iterations: the queue `[L, C, h, w]` (after the pop, shift and the new tail
frame), the number of iterations done, the output frames popped so far `[k, C, h, w]` (k = iterations done
minus the S - f warm-up ones, at least 0), the noise generator's state, and the settings the queue depends on
(f, n, lookahead, eta, queue initialisation, the DDIM timesteps, the latent frame shape), and with latent
seeding the latent the current seed tokens come from. A run resumed from
it draws the same noise in the same order, so it produces bit for bit the frames the uninterrupted run would
(test: tests/test_fifo_resume.py). The same file continues a *finished* run to more frames: a 20-frame run's
final state is the 40-frame run's state after the same iteration.

File format: one safetensors file (tensors `queue`, `frames`, `noise_state`, `seed_latent`; settings and counters as JSON
in the metadata), written to a temporary name and renamed over the old file, so a crash while writing leaves
the previous state intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

FORMAT = "fifo-infinity.fifo-state"
VERSION = 1


class FifoStateError(ValueError):
    """An unreadable state file or one made with other settings; the message names the file and the value."""


@dataclass
class FifoState:
    """A FIFO run between two iterations.

    iteration: iterations done (the next one to run); frames: `[k, C, h, w]` float32 output frames so far
    (model space); queue: `[L, C, h, w]` float32; noise_state: the noise source's state (uint8 tensor, e.g.
    `torch.Generator.get_state()`) or None; settings: `fifo_settings(...)` of the run; seed_latent: with
    latent seeding, the `[1, C, h, w]` latent the current seed tokens were made from (else None).
    """
    iteration: int
    queue: torch.Tensor
    frames: torch.Tensor
    noise_state: torch.Tensor | None
    settings: dict = field(default_factory=dict)
    seed_latent: torch.Tensor | None = None

    @property
    def frames_done(self) -> int:
        return int(self.frames.shape[0])


# settings added after state files were first written: what the older files were made with
SETTINGS_BEFORE_THEY_EXISTED = {"rescale": False}


def fifo_settings(options, timesteps: torch.Tensor, frame_shape: tuple[int, ...]) -> dict:
    """What a state depends on: `options` (FifoOptions, window_batch excluded: it does not change the numbers),
    the DDIM grid's timesteps `[S]` (0-999, ascending) and one latent frame's shape `(C, h, w)`."""
    return {"video_length": options.video_length, "num_partitions": options.num_partitions,
            "lookahead": bool(options.lookahead), "eta": float(options.eta), "queue_init": options.queue_init,
            "rescale": bool(options.rescale), "timesteps": [int(t) for t in timesteps.tolist()],
            "frame_shape": [int(s) for s in frame_shape]}


def check_compatible(state: FifoState, settings: dict, source: str = "the FIFO state") -> None:
    """Raise FifoStateError naming the first setting that differs between `state` and the run's `settings`."""
    for key, expected in settings.items():
        found = state.settings.get(key, SETTINGS_BEFORE_THEY_EXISTED.get(key))
        if found != expected:
            if key == "timesteps":
                raise FifoStateError(f"{source} was made with a DDIM grid of {len(found or [])} timesteps "
                                     f"({_short(found)}) but this run uses {len(expected)} ({_short(expected)}): "
                                     f"use the same sigmas (FIFO Sigmas with the same f and n)")
            raise FifoStateError(f"{source} was made with {key} = {found!r} but this run has {key} = {expected!r}: "
                                 f"resume with the settings of the run that wrote it")


def _short(values) -> str:
    values = list(values or [])
    return ", ".join(map(str, values)) if len(values) <= 6 else f"{values[0]}, {values[1]}, ..., {values[-1]}"


def temporary_state_path(path: str) -> str:
    """The temporary file `save_state` writes before renaming it to `path` (this process's id in the name)."""
    return f"{path}.{os.getpid()}.tmp"


def save_state(path: str, state: FifoState) -> None:
    """Write `state` to `path` atomically (temporary file, fsync, rename). Raises OSError if it cannot be
    written; the previous file at `path` is then unchanged."""
    tensors = {"queue": state.queue.detach().to("cpu", torch.float32).contiguous(),
               "frames": state.frames.detach().to("cpu", torch.float32).contiguous()}
    if state.noise_state is not None:
        tensors["noise_state"] = state.noise_state.detach().to("cpu").contiguous()
    if state.seed_latent is not None:
        tensors["seed_latent"] = state.seed_latent.detach().to("cpu", torch.float32).contiguous()
    metadata = {"format": FORMAT, "version": str(VERSION), "iteration": str(int(state.iteration)),
                "settings": json.dumps(state.settings)}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = temporary_state_path(path)
    try:
        save_file(tensors, temporary, metadata=metadata)
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)           # on disk before the rename: a power cut leaves the old or the new state
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_state(path: str) -> FifoState:
    """Read a state written by `save_state`. Raises FifoStateError for a missing, unreadable or foreign file."""
    if not os.path.isfile(path):
        raise FifoStateError(f"no FIFO state file at {path!r}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise FifoStateError(f"{path!r} is not a readable FIFO state file ({error})") from error
    if metadata.get("format") != FORMAT:
        raise FifoStateError(f"{path!r} is a safetensors file but not a FIFO state (no '{FORMAT}' metadata)")
    if int(metadata.get("version", 0)) > VERSION:
        raise FifoStateError(f"{path!r} has FIFO state version {metadata['version']}; this version of the pack "
                             f"reads up to {VERSION}: update the pack")
    return FifoState(iteration=int(metadata["iteration"]), queue=tensors["queue"], frames=tensors["frames"],
                     noise_state=tensors.get("noise_state"), settings=json.loads(metadata["settings"]),
                     seed_latent=tensors.get("seed_latent"))
