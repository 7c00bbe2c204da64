"""FIFO-Diffusion in ComfyUI: the SAMPLER adapter, FIFO's sigmas, the memory-estimate cap and the all-in-one run.

The algorithm is `samplers/fifo.py` (pure torch); this module adapts it to ComfyUI: the model is called through
the guider (so CFG, hooks, wrappers and attention patches apply), noise comes from a seeded generator, progress
and previews go through the sampling callback, interruption is checked before every model call.

How one FIFO model call reaches the UNet: the core hands `x [W*f, C, h, w]` (VP latents, model space) and one
timestep per frame. We look up each frame's sigma in the model's own sigma table (so `model_sampling.timestep`
gives back exactly that timestep, whatever schedule the model sampling has), feed the guider
`X = x / c_in(sigma)` (so the UNet input is exactly x), and recover the noise prediction from the guider's
denoised output, `eps = (X - denoised) / sigma` (EPS parameterisation; CFG is linear, so this is
`e_u + cfg (e_c - e_u)`). The DDIM step itself is done by the core with VideoCrafter2's alphas: plain DDIM for
the FIFO step (the official FIFO; `rescale_steps` applies VideoCrafter2's scale_arr there too) and VideoCrafter2's
rescaled DDIM for the base clip, whether or not the MODEL's sampling has the rescale switched on
(docs/videocrafter2.md, "The rescaled schedule"). `fifo_model` also switches it off on its clone, so CFG functions
see plain-DDIM denoised values.

Where the windows run (`devices`, as Apply Video-Infinity's; docs/fifo.md, "Across devices and processes"): empty or
"auto" runs them here, or over torch.distributed when the runner (run.py under torchrun) started a process group;
"distributed" insists on the process group. Each rank runs the whole sampling through its own ComfyUI and computes
its share of every iteration's windows (`FifoRun.workers` = `DistributedTransport`); rank 0 alone writes the state
file. A device list ("cuda:0,cuda:1", "cpu,cpu") splits the windows of every model call over UNet replicas on those
devices, below the guider (`FifoDeviceGroups`, `bridge/device_groups.py`): with window_batch 0 every iteration is
one call, so each device gets its share of the windows.
"""

from __future__ import annotations

import copy
import functools
import logging

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers

from ..parallel.transport import AUTO, DISTRIBUTED, DISTRIBUTED_NEEDS_RANKS, DistributedTransport, \
    InProcessTransport, distributed_ready, parse_devices
from ..samplers import ddim
from ..samplers.fifo import FifoError, FifoHooks, FifoOptions, FifoRun, GeneratorNoise, check_base_clip, \
    fifo_generate, queue_levels
from ..samplers.fifo_state import FifoStateError
from .consistency import LatentSeeding, SeedConds
from .device_groups import DeviceReplicas, in_group_call, run_on_groups
from .fifo_conditioning import FifoPromptList, PromptConds
from .fifo_progress import QueueProgress
from .state_file import StateFile

log = logging.getLogger("fifo_infinity")

WRAPPER_KEY = "fifo_infinity.fifo"
DEVICES_WRAPPER_KEY = "fifo_infinity.fifo_devices"


def fifo_sigmas(model_sampling, options: FifoOptions) -> torch.Tensor:
    """SIGMAS `[S + 1]` of FIFO's DDIM grid in the model's sigma table: `sigma(tau_{S-1}) .. sigma(tau_0)`, then 0
    (ComfyUI's convention; the FIFO step itself always ends on `a_0`, as the official code)."""
    timesteps = ddim.ddim_timesteps(options.steps)
    sigmas = model_sampling.sigmas.float().cpu()[timesteps.flip(0)]
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def schedule_from_sigmas(model_sampling, sigmas: torch.Tensor, options: FifoOptions) -> ddim.DDIMSchedule:
    """The DDIM grid given by ComfyUI SIGMAS (`[S + 1]`, descending; the last value is ignored). Raises FifoError
    unless there are S = f * n distinct levels."""
    steps = int(sigmas.shape[-1]) - 1
    if steps != options.steps:
        raise FifoError(
            f"sigmas has {steps} steps but the FIFO queue needs one DDIM level per main slot, f * n = "
            f"{options.video_length} * {options.num_partitions} = {options.steps}: connect the FIFO Sigmas node "
            f"with the same f and n (or a scheduler with steps = {options.steps})")
    timesteps = model_sampling.timestep(sigmas[:-1].float().cpu()).long().flip(0)
    if steps > 1 and not bool((timesteps[1:] > timesteps[:-1]).all()):
        raise FifoError(f"sigmas map to timesteps {timesteps.flip(0).tolist()}, which repeat a level: FIFO needs "
                        f"{options.steps} distinct noise levels (use the FIFO Sigmas node)")
    abar = getattr(model_sampling, "alphas_cumprod", None)
    if abar is None or abar.shape[0] != ddim.TRAIN_TIMESTEPS:
        abar = ddim.alphas_cumprod()
    return ddim.DDIMSchedule.build(timesteps=timesteps, eta=options.eta, abar=abar)


def _cap_memory_estimate(frames: int, executor, model, noise_shape, *args, **kwargs):
    """PREPARE_SAMPLING wrapper: ComfyUI estimates memory from the latent's frame count (N, any length); one
    FIFO model call holds at most `frames` frames per cond, so estimate with that many."""
    shape = list(noise_shape)
    shape[0] = min(shape[0], frames)
    return executor(model, shape, *args, **kwargs)


def fifo_outer_sample_wrapper(executor, noise, latent_image, sampler, sigmas, *args, **kwargs):
    """OUTER_SAMPLE wrapper registered on FIFO model clones: when the sampler is a FIFO sampler, cap the memory
    estimate of this sampling to one window batch (added to the guider's per-sampling model options only)."""
    if isinstance(sampler, FifoSampler):
        comfy.patcher_extension.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY,
            functools.partial(_cap_memory_estimate, sampler.frames_per_call), executor.class_obj.model_options,
            is_model_options=True)
    return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)


def register_memory_cap(model: comfy.model_patcher.ModelPatcher) -> None:
    """Add the OUTER_SAMPLE wrapper that caps the memory estimate of FIFO samplings, in place: only on a patcher
    the caller owns (a clone, or a model its loader just built). Harmless for other samplers. Without it,
    SamplerCustom(Advanced) estimates memory for all N frames of the latent (on a GPU that can force a
    needlessly partial model load); the all-in-one node always has it."""
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, fifo_outer_sample_wrapper)


def fifo_model(model: comfy.model_patcher.ModelPatcher) -> comfy.model_patcher.ModelPatcher:
    """A clone of MODEL for FIFO: the memory-cap wrapper, and VideoCrafter2's rescale switched off in its model
    sampling (the FIFO step is plain DDIM). The caller's MODEL is not modified."""
    model = model.clone()
    register_memory_cap(model)
    sampling = model.get_model_object("model_sampling")
    if getattr(sampling, "rescale", False):
        plain = type(sampling)(model.model.model_config, rescale=False)
        model.add_object_patch("model_sampling", plain)
    return model


def check_video_latent(latent: torch.Tensor) -> None:
    """Raise FifoError unless `latent` is laid out as `[frames, C, h, w]` (frames as batch)."""
    if latent.ndim != 4:
        raise FifoError(f"the latent has shape {tuple(latent.shape)}; FIFO needs a video latent laid out as "
                        f"frames x channels x h x w (frames as batch, e.g. from Empty Video Latent)")


def fifo_workers(devices: str, video_length: int):
    """What `devices` means for one FIFO sampling: `(workers, device_groups)`, at most one of them set.
    workers: a `DistributedTransport` (torch.distributed ranks) or None; device_groups: a `FifoDeviceGroups` for a
    device list, or None. Raises FifoError for "distributed" without a process group of several ranks, and
    VideoInfinityError (a ValueError) for devices that do not exist."""
    spec = parse_devices(devices)
    if spec == AUTO:
        return (DistributedTransport() if distributed_ready() else None), None
    if spec == DISTRIBUTED:
        if not distributed_ready():
            raise FifoError(DISTRIBUTED_NEEDS_RANKS)
        return DistributedTransport(), None
    return None, FifoDeviceGroups(spec, video_length)


class FifoDeviceGroups:
    """DIFFUSION_MODEL wrapper: the windows of each FIFO model call split over in-process device groups (one UNet
    replica per device other than the model's; the groups of one device take turns). A call of W windows uses the
    first min(W, devices) entries. `replicas.clear()` when the sampling ends."""

    def __init__(self, devices: list, video_length: int):
        self.devices, self.video_length = list(devices), video_length
        self.replicas = DeviceReplicas()

    def diffusion_model_wrapper(self, executor, x, timesteps, context=None, control=None, transformer_options={},
                                *args, **kwargs):
        if in_group_call(transformer_options):
            return executor(x, timesteps, context, control, transformer_options, *args, **kwargs)
        f = self.video_length
        chunks = max(1, len(transformer_options.get("cond_or_uncond") or [0]))
        windows = x.shape[0] // (chunks * f)
        if windows * chunks * f != x.shape[0]:
            raise FifoError(f"a FIFO model call of {x.shape[0]} frames is not {chunks} cond/uncond copies of whole "
                            f"windows of f = {f} frames")
        return run_on_groups(executor, InProcessTransport(self.devices[:windows]), self.replicas, windows, f, chunks,
                             x, timesteps, context, control, transformer_options, args, kwargs)

    def install(self, model_options: dict) -> None:
        """Add the wrapper to one sampling's model options (a copy the caller owns)."""
        comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                                                     DEVICES_WRAPPER_KEY, self.diffusion_model_wrapper, model_options,
                                                     is_model_options=True)


class _GuidedEps:
    """The core's `eps_model` on top of ComfyUI's guider (see the module docstring), swapping the positive conds
    for a prompt schedule's mix and for latent seeding before each call."""

    def __init__(self, guider, model_options: dict, seed: int, device, prompt_conds: PromptConds | None,
                 seed_conds: SeedConds | None):
        self.guider, self.model_options, self.seed, self.device = guider, model_options, seed, device
        self.sampling = guider.inner_model.model_sampling
        self.sigma_table = self.sampling.sigmas.to(device=device, dtype=torch.float32)
        self.prompt_conds, self.seed_conds = prompt_conds, seed_conds
        self.original_conds = dict(guider.conds)

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, mix=None) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        sigma = self.sigma_table[timesteps.to(self.device)]
        ones = torch.ones((x.shape[0], 1, 1, 1), device=self.device, dtype=torch.float32)
        model_input = x / self.sampling.calculate_input(sigma, ones)
        if self.prompt_conds is not None or self.seed_conds is not None:
            positive = self.prompt_conds(mix) if self.prompt_conds is not None else self.original_conds["positive"]
            if self.seed_conds is not None:
                positive = self.seed_conds.positive(positive)
            self.guider.conds["positive"] = positive
        denoised = self.guider(model_input, sigma, model_options=self.model_options, seed=self.seed)
        return ((model_input - denoised.float()) / sigma.view(-1, 1, 1, 1)).float()

    def restore(self) -> None:
        """Give the guider back the conds it had before sampling."""
        self.guider.conds.clear()
        self.guider.conds.update(self.original_conds)


class FifoSampler(comfy.samplers.Sampler):
    """ComfyUI SAMPLER running FIFO-Diffusion (`samplers.fifo`) through the guider it is given.

    The latent's frame count is the number of output frames N (its content is not used); the output is
    `[N, C, h, w]`. sigmas must have S = f * n steps (FIFO Sigmas). Randomness comes from the sampling seed.
    base_clip: VAE-space LATENT samples `[f, C, h, w]` or None (a base clip is then sampled); prompts: a prompt
    schedule replacing the guider's positive; node_id: the node showing the live queue view (web/js), if any;
    state: the state file to write / resume from; seeding: FIFO+ latent seeding settings; devices: where the
    windows run (module docstring; checked here, resolved when sampling starts).
    """

    def __init__(self, options: FifoOptions, base_clip: torch.Tensor | None = None,
                 prompts: FifoPromptList | None = None, node_id: str | None = None, state: StateFile | None = None,
                 seeding: LatentSeeding | None = None, devices: str = ""):
        if base_clip is not None:
            check_base_clip(base_clip, options)
        parse_devices(devices)               # devices that do not exist are refused before any work
        self.devices = devices or ""
        self.options = options
        self.base_clip = base_clip
        self.prompts = prompts
        self.node_id = node_id
        self.state = state
        self.seeding = seeding

    @property
    def frames_per_call(self) -> int:
        """Most frames (per cond) in one model call of this process: one window batch of its windows (under
        torch.distributed its share, 1/K of them rounded up), or the f-frame base clip."""
        options = self.options
        windows = options.num_windows
        if parse_devices(self.devices) in (AUTO, DISTRIBUTED) and distributed_ready():
            windows = -(-windows // torch.distributed.get_world_size())
        return options.windows_per_call_of(windows) * options.video_length

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False, **_host_extras):
        guider, options = model_wrap, self.options
        reference = latent_image if latent_image is not None else noise
        check_video_latent(reference)
        if denoise_mask is not None:
            log.warning("FIFO Sampler: the latent's noise mask is ignored (FIFO generates every frame)")
        device, seed = noise.device, int(extra_args.get("seed") or 0)
        workers, device_groups = fifo_workers(self.devices, options.video_length)
        run = FifoRun(options, int(reference.shape[0]), tuple(reference.shape[1:]), GeneratorNoise(seed, device),
                      schedule=schedule_from_sigmas(guider.inner_model.model_sampling, sigmas, options),
                      prompt_schedule=self.prompts.schedule() if self.prompts is not None else None,
                      device=device, output_device=comfy.model_management.intermediate_device(), workers=workers)
        if workers is not None:
            log.info("FIFO Sampler: the windows of each iteration on %s", workers.describe())
        resume = self.state.load() if self.state is not None and self.state.resume else None
        eps = self._guided_eps(guider, extra_args, run, noise, latent_image, seed)
        if device_groups is not None:
            device_groups.install(eps.model_options)
        try:
            output = fifo_generate(eps, run, self._model_base_clip(guider, run, resume), resume,
                                   self._hooks(run, eps.seed_conds, callback))
        except FifoStateError as error:
            raise ValueError(f"resume: {error}") from error
        finally:
            eps.restore()
            if device_groups is not None:
                device_groups.replicas.clear()
        if callback is not None:   # last step: the whole video as x0, so SamplerCustom's denoised_output is it
            callback(run.iterations - 1, output, output, run.iterations)
        return output

    def _guided_eps(self, guider, extra_args, run: FifoRun, noise, latent_image, seed: int) -> _GuidedEps:
        inner = guider.inner_model
        model_options = comfy.model_patcher.create_model_options_clone(extra_args["model_options"])
        model_options.setdefault("transformer_options", {})["video_length"] = self.options.video_length
        prompt_conds = None
        if self.prompts is not None:
            prompt_conds = PromptConds(self.prompts, run.prompt_schedule, inner, noise, run.device, latent_image, seed)
        seed_conds = SeedConds(self.seeding, guider, inner) if self.seeding is not None else None
        return _GuidedEps(guider, model_options, seed, run.device, prompt_conds, seed_conds)

    def _model_base_clip(self, guider, run: FifoRun, resume) -> torch.Tensor | None:
        """The given base clip in model space `[f, C, h, w]` float32 on the run's device (None when resuming)."""
        if self.base_clip is None or resume is not None:
            return None
        check_base_clip(self.base_clip, self.options, run.frame_shape)
        return guider.inner_model.process_latent_in(self.base_clip.to(device=run.device, dtype=torch.float32)).float()

    def _hooks(self, run: FifoRun, seed_conds: SeedConds | None, callback) -> FifoHooks:
        """Progress (sampling callback with the popped frame as x0, the live queue view), interruption checks,
        state writes and latent seeding."""
        options = self.options
        progress = QueueProgress(self.node_id, queue_levels(options, run.schedule)[0].tolist(), options.head,
                                 run.iterations, run.num_frames)
        windows = [(w.start, w.end) for w in options.windows()]

        def on_base_step(i, steps, pred_x0):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if callback is not None:
                callback(i, pred_x0, pred_x0, steps)

        def on_frame(i, iterations, popped):
            comfy.model_management.throw_exception_if_processing_interrupted()
            progress.update(i, max(0, i - options.warmup + 1), windows)
            if callback is not None and i < iterations - 1:
                callback(i, popped, popped, iterations)

        state = self.state
        writes = state is not None and (run.workers is None or run.workers.rank == 0)    # one writer per file
        return FifoHooks(on_base_step=on_base_step, on_frame=on_frame,
                         on_state=state.writer(final_iteration=run.iterations) if writes else None,
                         state_every=state.every if state is not None else 0,
                         seeding=seed_conds.seed if seed_conds is not None else None,
                         reseed_every=self.seeding.reseed_every if self.seeding is not None else 0)


def generate_video(model, positive, negative, sampler: FifoSampler, frames: int, width: int, height: int,
                   seed: int, cfg: float, fps: int) -> dict:
    """The all-in-one FIFO run: a CFG guider on a FIFO clone of `model`, fps conditioning on both prompts (and a
    prompt schedule's), FIFO's sigmas, progress with previews. Returns LATENT `{"samples": [frames, C, height/8,
    width/8]}` (VAE space). Raises ValueError when the base clip's size disagrees with width x height; the core's
    FifoError and PromptScheduleError are ValueErrors too."""
    channels = model.model.latent_format.latent_channels
    latent = torch.zeros([frames, channels, height // 8, width // 8], device=comfy.model_management.intermediate_device())
    base = sampler.base_clip
    if base is not None and tuple(base.shape[1:]) != tuple(latent.shape[1:]):
        raise ValueError(f"base_clip latent frames are {'x'.join(map(str, base.shape[1:]))} but width x height "
                         f"{width}x{height} gives {'x'.join(map(str, latent.shape[1:]))}: set width and height to "
                         f"{base.shape[3] * 8}x{base.shape[2] * 8}")
    values = {"fps": fps}
    if sampler.prompts is not None:
        sampler = copy.copy(sampler)
        sampler.prompts = sampler.prompts.with_values(values)
    model = fifo_model(model)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(node_helpers.conditioning_set_values(positive, values),
                     node_helpers.conditioning_set_values(negative, values))
    guider.set_cfg(cfg)
    sigmas = fifo_sigmas(model.get_model_object("model_sampling"), sampler.options)
    callback = latent_preview.prepare_callback(model, sampler.options.iterations(frames))
    samples = guider.sample(torch.zeros_like(latent), latent, sampler, sigmas, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return {"samples": samples.to(comfy.model_management.intermediate_device())}
