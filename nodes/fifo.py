"""FIFO-Diffusion nodes: the FIFO SAMPLER for SamplerCustom / SamplerCustomAdvanced, its sigmas, an all-in-one
node and multi-prompt schedules. The algorithm lives in `samplers/` (pure torch); this file only adapts it to
ComfyUI: the model is called through the guider (so CFG, hooks, wrappers and attention patches apply), noise
comes from a seeded generator, progress and previews go through the sampling callback.

How one FIFO model call reaches the UNet: the core hands `x [W*f, C, h, w]` (VP latents, model space) and one
timestep per frame. We look up each frame's sigma in the model's own sigma table (so `model_sampling.timestep`
gives back exactly that timestep, whatever schedule the model sampling has), feed the guider
`X = x / c_in(sigma)` (so the UNet input is exactly x), and recover the noise prediction from the guider's
denoised output, `eps = (X - denoised) / sigma` (EPS parameterisation; CFG is linear, so this is
`e_u + cfg (e_c - e_u)`). The DDIM step itself is done by the core with VideoCrafter2's alphas: plain DDIM for
the FIFO step (the official FIFO; `rescale_steps` applies VideoCrafter2's scale_arr there too) and VideoCrafter2's
rescaled DDIM for the base clip, whether or not the MODEL's sampling has the rescale switched on (DESIGN
decision 4). The all-in-one node also switches it off on its model clone, so CFG functions see plain-DDIM
denoised values.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass

import torch

import comfy.conds
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
from comfy_api.latest import io

from ..samplers import ddim
from ..samplers.fifo import (QUEUE_INIT_MODES, FifoError, FifoOptions, GeneratorNoise, check_base_clip, fifo_generate,
                             queue_levels)
from ..samplers.fifo_state import FifoState, FifoStateError, load_state, save_state, temporary_state_path
from ..samplers.schedule import PromptSchedule, PromptScheduleError
from ..videocrafter.image_attention import TEXT_TOKENS, context_with_image_tokens
from .common import category
from .fifo_progress import QueueProgress
from .input_checks import PIXEL_SIZES as SIZES, check_declared, require_declared
from .video_stream import safe_prefix

log = logging.getLogger("fifo_infinity")

WRAPPER_KEY = "fifo_infinity.fifo"
FifoPromptScheduleType = io.Custom("FIFO_PROMPT_SCHEDULE")
LatentSeedingType = io.Custom("FIFO_LATENT_SEEDING")


# ---------------------------------------------------------------------------------------------- prompt schedule

class FifoPromptList:
    """An immutable chain of `(CONDITIONING, frames, transition)` entries (the FIFO_PROMPT_SCHEDULE value)."""

    def __init__(self, entries=()):
        self.entries = tuple(entries)

    def appended(self, conditioning, frames: int, transition: int) -> "FifoPromptList":
        return FifoPromptList(self.entries + ((conditioning, int(frames), int(transition)),))

    @property
    def conditionings(self) -> list:
        return [entry[0] for entry in self.entries]

    def schedule(self) -> PromptSchedule:
        return PromptSchedule(tuple(entry[1] for entry in self.entries),
                              transition=tuple(entry[2] for entry in self.entries[1:]))

    def with_values(self, values: dict) -> "FifoPromptList":
        """A copy whose conditionings carry `values` (e.g. fps)."""
        return FifoPromptList((node_helpers.conditioning_set_values(c, values), frames, k)
                              for c, frames, k in self.entries)


# ---------------------------------------------------------------------------------------------- state files

@dataclass(frozen=True)
class StateFile:
    """Where and how often a FIFO run writes its state (`samplers.fifo_state`), and whether it resumes from it.

    path: absolute file path (inside ComfyUI's output folder, see `state_file`); every: output frames between
    writes (the state is also written after the last frame and when the run stops with an error or an
    interruption); resume: continue from the file instead of starting from the seed.
    """
    path: str
    every: int = 16
    resume: bool = False

    def load(self) -> FifoState:
        try:
            return load_state(self.path)
        except FifoStateError as error:
            raise ValueError(f"resume: {error}. Run once with resume off to write it (state_every > 0), or "
                             f"correct state_file") from error

    def check_writable(self) -> None:
        """Raise ValueError (naming state_file) now, before sampling, if the state cannot be written: the exact
        temporary file `save_state` writes first (the longest name it uses) is created and removed once, so a
        name the file system refuses (too long, a NUL character) or a folder without write access is caught."""
        folder = os.path.dirname(self.path)
        probe = temporary_state_path(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            with open(probe, "xb"):
                pass
            os.remove(probe)
        except (OSError, ValueError) as error:      # ValueError: a name with a NUL character
            raise ValueError(f"state_file: cannot write the FIFO state {self.path!r} ({error}); choose another "
                             f"state_file (a shorter name in a writable folder under the output folder) or leave "
                             f"it empty") from error

    def writer(self, final_iteration: int):
        """on_state callback: writes each state. The first write of a fresh run (resume off) keeps a state file
        already there as `<name>.previous.safetensors` instead of overwriting it. A periodic write that fails
        (any error) is logged and the run goes on, the previous state file intact. The final write (iteration
        `final_iteration`, all frames done) must succeed: if it fails, the state is saved under
        `fifo_state_rescued/` in the output folder instead and the error names state_file and that file."""
        keep_previous = [not self.resume]

        def write(state: FifoState) -> None:
            try:
                if keep_previous[0] and os.path.exists(self.path):
                    previous = self.path[:-len(".safetensors")] + ".previous.safetensors"
                    os.replace(self.path, previous)
                    log.warning("FIFO: a new run writes %s; the state that was there is kept as %s",
                                self.path, previous)
                keep_previous[0] = False
                save_state(self.path, state)
            except Exception as error:       # noqa: BLE001 - a state write must never lose the run
                if state.iteration < final_iteration:
                    log.warning("FIFO: could not write the state file %s (%s); sampling continues", self.path, error)
                    return
                raise ValueError(f"state_file: the final state could not be written to {self.path!r} ({error}); "
                                 f"{_rescue_state(state)}") from error
        return write


def _rescue_state(state: FifoState) -> str:
    """Save `state` (all frames) under `<output>/fifo_state_rescued/` and say where, or say that it failed too."""
    import folder_paths
    name = f"fifo_state_rescued/state_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    path = os.path.join(folder_paths.get_output_directory(), name + ".safetensors")
    try:
        save_state(path, state)
    except Exception as error:               # noqa: BLE001
        return f"saving it to {path!r} failed too ({error})"
    return (f"the state with all {state.frames_done} frames is saved instead as {path!r}: queue again with "
            f"state_file {name!r} and resume on to get the video without sampling again")


def make_state_file(name: str, every: int, resume: bool) -> StateFile | None:
    """StateFile for the nodes' `state_file` input: a name under ComfyUI's output folder ('..' and absolute parts
    dropped, as the save nodes do; `.safetensors` added if missing), or None when the name is empty. The nodes
    call it when they run, before any sampling: a name that cannot be written raises ValueError naming
    state_file (`StateFile.check_writable`)."""
    name = (name or "").strip()
    if not name:
        if resume:
            raise ValueError("resume is on but state_file is empty: give the state file of the run to continue")
        return None
    if every < 0:
        raise ValueError(f"state_every = {every}: use 0 (only at the end and on interruption) or a frame count")
    relative = safe_prefix(name, default=None)
    if relative is None:
        raise ValueError(f"state_file = {name!r}: nothing is left of the name once '..' and absolute parts are "
                         f"dropped; give a name under the output folder such as fifo_state/my_video")
    import folder_paths
    if not relative.endswith(".safetensors"):
        relative += ".safetensors"
    state = StateFile(os.path.join(folder_paths.get_output_directory(), relative), every, resume)
    state.check_writable()
    return state


# ---------------------------------------------------------------------------------------------- the SAMPLER

def fifo_sigmas(model_sampling, options: FifoOptions) -> torch.Tensor:
    """SIGMAS `[S + 1]` of FIFO's DDIM grid in the model's sigma table: `sigma(tau_{S-1}) .. sigma(tau_0)`, then 0
    (ComfyUI's convention; the FIFO step itself always ends on `a_0`, as the official code)."""
    timesteps = ddim.ddim_timesteps(options.steps)
    sigmas = model_sampling.sigmas.float().cpu()[timesteps.flip(0)]
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def schedule_from_sigmas(model_sampling, sigmas: torch.Tensor, options: FifoOptions) -> ddim.DDIMSchedule:
    """The DDIM grid given by ComfyUI SIGMAS (`[S + 1]`, descending; the last value is ignored)."""
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


class FifoSampler(comfy.samplers.Sampler):
    """ComfyUI SAMPLER running FIFO-Diffusion (`samplers.fifo`) through the guider it is given.

    The latent's frame count is the number of output frames N (its content is not used); the output is
    `[N, C, h, w]`. sigmas must have S = f * n steps (FIFO Sigmas). Randomness comes from the sampling seed.
    """

    def __init__(self, options: FifoOptions, base_clip: torch.Tensor | None = None,
                 prompts: FifoPromptList | None = None, node_id: str | None = None, state: StateFile | None = None,
                 seeding: "LatentSeeding | None" = None):
        self.options = options
        self.base_clip = base_clip          # VAE-space LATENT samples [f, C, h, w] or None
        self.prompts = prompts
        self.node_id = node_id              # the node showing the live queue view (web/js), if any
        self.state = state                  # state file to write / resume from, or None
        self.seeding = seeding              # latent seeding (FIFO+ t2v_seed) settings, or None

    @property
    def frames_per_call(self) -> int:
        """Most frames (per cond) in one model call: one window batch, or the f-frame base clip."""
        return self.options.windows_per_call * self.options.video_length

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False, **_host_extras):
        guider = model_wrap
        inner = guider.inner_model
        sampling = inner.model_sampling
        options = self.options
        reference = latent_image if latent_image is not None else noise
        if reference.ndim != 4:
            raise FifoError(f"the latent has shape {tuple(reference.shape)}; FIFO needs a video latent laid out as "
                            f"frames x channels x h x w (frames as batch, e.g. from Empty Video Latent)")
        if denoise_mask is not None:
            log.warning("FIFO Sampler: the latent's noise mask is ignored (FIFO generates every frame)")
        num_frames = int(reference.shape[0])
        frame_shape = tuple(reference.shape[1:])
        options.check_num_frames(num_frames)
        grid = schedule_from_sigmas(sampling, sigmas, options)
        device = noise.device
        seed = int(extra_args.get("seed") or 0)

        resume, on_state = None, None
        if self.state is not None:
            resume = self.state.load() if self.state.resume else None
            on_state = self.state.writer(final_iteration=options.iterations(num_frames))

        base_clip = None
        if self.base_clip is not None and resume is None:
            check_base_clip(self.base_clip, options, frame_shape)
            base_clip = inner.process_latent_in(self.base_clip.to(device=device, dtype=torch.float32)).float()

        model_options = comfy.model_patcher.create_model_options_clone(extra_args["model_options"])
        model_options.setdefault("transformer_options", {})["video_length"] = options.video_length
        sigma_table = sampling.sigmas.to(device=device, dtype=torch.float32)

        prompt_schedule, conds_for = None, None
        original_conds = dict(guider.conds)
        if self.prompts is not None:
            prompt_schedule = self.prompts.schedule()
            prompt_schedule.check_covers(num_frames)
            conds_for = _PromptConds(self.prompts, prompt_schedule, inner, noise, device, latent_image, seed)
        seed_conds = _SeedConds(self.seeding, guider, inner) if self.seeding is not None else None

        def eps_model(x, timesteps, mix=None):
            comfy.model_management.throw_exception_if_processing_interrupted()
            sigma = sigma_table[timesteps.to(device)]
            c_in = sampling.calculate_input(sigma, torch.ones((x.shape[0], 1, 1, 1), device=device, dtype=torch.float32))
            model_input = x / c_in
            if conds_for is not None or seed_conds is not None:
                positive = conds_for(mix) if conds_for is not None else original_conds["positive"]
                guider.conds["positive"] = seed_conds.positive(positive) if seed_conds is not None else positive
            denoised = guider(model_input, sigma, model_options=model_options, seed=seed)
            return ((model_input - denoised.float()) / sigma.view(-1, 1, 1, 1)).float()

        total_frames = options.iterations(num_frames)
        progress = QueueProgress(self.node_id, queue_levels(options, grid)[0].tolist(), options.head, total_frames,
                                 num_frames)
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

        try:
            output = fifo_generate(eps_model, num_frames, frame_shape, options, GeneratorNoise(seed, device),
                                   base_clip=base_clip, prompt_schedule=prompt_schedule, device=device,
                                   on_base_step=on_base_step, on_frame=on_frame, schedule=grid,
                                   output_device=comfy.model_management.intermediate_device(),
                                   resume=resume, on_state=on_state,
                                   state_every=self.state.every if self.state is not None else 0,
                                   seeding=seed_conds.seed if seed_conds is not None else None,
                                   reseed_every=self.seeding.reseed_every if self.seeding is not None else 0)
        except FifoStateError as error:
            raise ValueError(f"resume: {error}") from error
        finally:
            guider.conds.clear()
            guider.conds.update(original_conds)
        if callback is not None:   # last step: the whole video as x0, so SamplerCustom's denoised_output is it
            callback(total_frames - 1, output, output, total_frames)
        return output


class _PromptConds:
    """Processed positive conds per prompt of a schedule, and their text-embedding blends for a PromptMix."""

    def __init__(self, prompts: FifoPromptList, schedule: PromptSchedule, model, noise, device, latent_image, seed):
        self.processed = []
        for conditioning in prompts.conditionings:
            conds = {"positive": comfy.sampler_helpers.convert_cond(conditioning)}
            conds = comfy.samplers.process_conds(model, noise, conds, device, latent_image, None, seed)
            self.processed.append(conds["positive"])
        for j, k in enumerate(schedule.transitions):
            if k > 0:
                self._check_blendable(j, j + 1)
        self.cache = {}

    def _embeddings(self, j):
        return [entry["model_conds"]["c_crossattn"].cond for entry in self.processed[j]]

    def _check_blendable(self, a, b):
        ea, eb = self._embeddings(a), self._embeddings(b)
        shapes_a, shapes_b = [tuple(e.shape) for e in ea], [tuple(e.shape) for e in eb]
        if shapes_a != shapes_b:
            raise FifoError(f"prompts {a + 1} and {b + 1} of the FIFO prompt schedule have text embeddings of shapes "
                            f"{shapes_a} and {shapes_b}; a transition blends them, so they must match (keep both "
                            f"prompts within 75 tokens, or set that transition to 0)")

    def __call__(self, mix):
        if mix is None:
            mix = ((0, 1.0),)
        if len(mix) == 1:
            return self.processed[mix[0][0]]
        if mix not in self.cache:
            dominant = max(mix, key=lambda item: item[1])[0]
            blended = []
            for i, entry in enumerate(self.processed[dominant]):
                tensor = sum(w * self.processed[j][i]["model_conds"]["c_crossattn"].cond for j, w in mix)
                entry = entry.copy()
                entry["model_conds"] = dict(entry["model_conds"], c_crossattn=comfy.conds.CONDCrossAttn(tensor))
                blended.append(entry)
            self.cache = {mix: blended}     # one iteration's mix at a time
        return self.cache[mix]


@dataclass(frozen=True)
class LatentSeeding:
    """FIFO+ latent seeding settings (the FIFO_LATENT_SEEDING value): the VAE that decodes the seed latent, the
    VideoCrafter1 image encoder that embeds it, and how often to re-seed (output frames; 0 = once)."""
    vae: object
    image_encoder: object
    reseed_every: int = 0


def _replace_context(entries: list, context_for) -> list:
    """Copies of processed cond entries whose c_crossattn is `context_for(old_context)`."""
    out = []
    for entry in entries:
        old = entry["model_conds"]["c_crossattn"].cond
        entry = entry.copy()
        entry["model_conds"] = dict(entry["model_conds"], c_crossattn=comfy.conds.CONDCrossAttn(context_for(old)))
        out.append(entry)
    return out


class _SeedConds:
    """Latent seeding on the guider's processed conds (FIFO+ `t2v_seed`, spec `fifo_diffusion.md` 3.2).

    `seed(latent)` (called by the FIFO core with a model-space latent `[1, C, h, w]`) decodes it with the VAE,
    embeds the image into 16 tokens with the image encoder and from then on the positive context is its 77
    text tokens followed by those tokens (a re-seed replaces them: the context never grows); the negative
    context gets the mid-grey image's tokens, as the official unconditional branch (77 + 16 tokens). Before the
    first seed (the base clip) both stay text-only.
    """

    def __init__(self, seeding: LatentSeeding, guider, inner_model):
        if seeding.image_encoder is None:
            raise ValueError("latent_seeding: the image encoder is missing; latent seeding needs a VideoCrafter1 "
                             "image-to-video checkpoint (its loader's IMAGE_ENCODER output)")
        if not getattr(inner_model.diffusion_model, "image_cross_attention", False):
            raise ValueError("latent_seeding: this MODEL has no image cross-attention (to_k_ip / to_v_ip), so it "
                             "cannot condition on the seed frame; use a VideoCrafter1 image-to-video checkpoint "
                             "(Image2Video_512 model.ckpt), as FIFO+ does")
        for name in ("positive", "negative"):
            for entry in guider.conds.get(name, []):
                tokens = entry["model_conds"]["c_crossattn"].cond.shape[1]
                if tokens > TEXT_TOKENS:
                    raise ValueError(f"latent_seeding: the {name} conditioning already has {tokens} tokens (text + "
                                     f"image); latent seeding adds its own image tokens, so connect the plain text "
                                     f"conditioning (without Image to Video Conditioning), or drop the seeding")
        self.seeding = seeding
        self.guider = guider
        self.inner_model = inner_model
        self.negative = guider.conds.get("negative")
        self.tokens = None
        self.cache = {}

    def seed(self, latent: torch.Tensor) -> None:
        images = self.seeding.vae.decode(self.inner_model.process_latent_out(latent))
        images = images.reshape(-1, *images.shape[-3:])[:1, :, :, :3]
        self.tokens = self.seeding.image_encoder.encode(images)
        self.cache = {}
        if self.negative is not None:
            grey = self.seeding.image_encoder.unconditional_tokens()
            self.guider.conds["negative"] = _replace_context(self.negative, lambda c: context_with_image_tokens(c, grey))

    def positive(self, entries: list) -> list:
        if self.tokens is None:
            return entries
        key = id(entries)
        if key not in self.cache:
            self.cache = {key: (entries, _replace_context(entries, lambda c: context_with_image_tokens(c, self.tokens)))}
        return self.cache[key][1]


# ---------------------------------------------------------------------------------------------- nodes

def _option_inputs():
    return [
        io.Int.Input("video_length", default=16, min=1, max=256,
                     tooltip="f: frames per model call, the model's training clip length (VideoCrafter2: 16). "
                             "Must be even with lookahead."),
        io.Int.Input("num_partitions", default=4, min=1, max=64,
                     tooltip="n: latent partitions. The queue holds f*n frames at f*n DDIM levels; more partitions "
                             "= smaller noise spread inside one call (paper: better quality), more compute per frame."),
        io.Boolean.Input("lookahead", default=True,
                         tooltip="Lookahead denoising: 2n half-overlapping windows, each updating only its noisier half "
                                 "with f/2 cleaner frames as context (paper default; twice the compute)."),
        io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="DDIM eta of the FIFO step and the base clip. 1 = the official default (stochastic), "
                               "0 = deterministic DDIM."),
        io.Int.Input("window_batch", default=0, min=0, max=128,
                     tooltip="Windows per model call: 0 = all windows of one iteration in one batch (fastest), "
                             "lower to save memory. The result does not depend on it."),
        io.Combo.Input("queue_init", options=list(QUEUE_INIT_MODES), default="official",
                       tooltip="How the queue starts from the base clip: official (frame 0 repeated for the first "
                               "S-f+1 slots) or uniform (FIFO+ 'unilatent': each base frame repeated n times)."),
    ]


def _state_inputs():
    return [
        LatentSeedingType.Input("latent_seeding", optional=True,
                                tooltip="Optional FIFO Latent Seeding (FIFO+): the queue's first frame, embedded as an "
                                        "image, conditions the whole run (needs a VideoCrafter1 image-to-video model)."),
        io.String.Input("state_file", default="", optional=True,
                        tooltip="Optional: a file name under ComfyUI's output folder (e.g. fifo_state/my_video) where "
                                "the run saves its queue, noise state and frames so far, so it can be resumed after "
                                "a crash or an interruption, or continued to more frames. Empty = no state file."),
        io.Int.Input("state_every", default=16, min=0, max=1000000, optional=True,
                     tooltip="Write the state file every this many output frames (0: only at the end and when the "
                             "run stops early). Each write stores all frames so far (about 40 KB per 512x320 frame)."),
        io.Boolean.Input("resume", default=False, optional=True,
                         tooltip="Continue from state_file instead of starting from the seed: the result is exactly "
                                 "what an uninterrupted run would have made. Raise the frame count to extend a "
                                 "finished run. f, n, lookahead, eta, queue_init, rescale_steps and the size must "
                                 "match the run that wrote it; prompts may change."),
        io.Boolean.Input("rescale_steps", default=False, optional=True,
                         tooltip="Apply VideoCrafter2's rescaled noise schedule (scale_arr) in the queue and every "
                                 "FIFO step, as its own DDIM does for the base clip. Off = the official FIFO-Diffusion "
                                 "(plain DDIM steps). On follows the model's training; on the bundled tiny model it "
                                 "keeps the prompt's colour longer (benchmarks/results/quality.md)."),
    ]


def _options(video_length, num_partitions, lookahead, eta, window_batch, queue_init, rescale=False) -> FifoOptions:
    try:
        return FifoOptions(video_length=video_length, num_partitions=num_partitions, lookahead=lookahead, eta=eta,
                           window_batch=window_batch, queue_init=queue_init, rescale=rescale)
    except FifoError as error:
        raise ValueError(str(error)) from error


def _base_clip_samples(base_clip, options: FifoOptions):
    if base_clip is None:
        return None
    samples = base_clip["samples"]
    try:
        check_base_clip(samples, options)
    except FifoError as error:
        raise ValueError(str(error)) from error
    return samples


class FIFOSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FIFOSampler",
            display_name="FIFO Sampler",
            category=category("sampling"),
            description=(
                "FIFO-Diffusion (Kim et al., NeurIPS 2024) as a SAMPLER for SamplerCustom / SamplerCustomAdvanced: "
                "generates a video of any length with a clip model (VideoCrafter2) at constant memory. A queue of "
                "f*n frames at increasing noise is denoised diagonally (each frame at its own timestep), the clean "
                "head frame is popped every iteration and fresh noise enters the tail. Connect a video latent whose "
                "frame count is the number of output frames N (e.g. Empty Video Latent), FIFO Sigmas with the same "
                "f and n, and any guider (CFG, hooks and patches apply). Without a base clip, one f-frame clip is "
                "first sampled with VideoCrafter2's own DDIM; the sampling seed drives all noise."),
            inputs=_option_inputs() + [
                io.Latent.Input("base_clip", optional=True,
                                tooltip="Optional f-frame LATENT to build the queue from instead of sampling one "
                                        "(same latent size as the video)."),
                FifoPromptScheduleType.Input("prompt_schedule", optional=True,
                                             tooltip="Optional FIFO Prompt Schedule: replaces the guider's positive "
                                                     "prompt with several prompts over the video."),
                *_state_inputs(),
            ],
            outputs=[io.Sampler.Output(tooltip="The FIFO sampler, for SamplerCustom / SamplerCustomAdvanced.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, eta=None):
        # Names only what ComfyUI's own per-input check misses (NaN passes it); the rules across f, n and
        # lookahead and the state file are checked when the node runs, before any sampling.
        return check_declared(cls, dict(eta=eta)) or True

    @classmethod
    def execute(cls, video_length, num_partitions, lookahead, eta, window_batch, queue_init, base_clip=None,
                prompt_schedule=None, latent_seeding=None, state_file="", state_every=16, resume=False,
                rescale_steps=False):
        require_declared(cls, dict(video_length=video_length, num_partitions=num_partitions, eta=eta,
                                   window_batch=window_batch, state_every=state_every))
        options = _options(video_length, num_partitions, lookahead, eta, window_batch, queue_init, rescale_steps)
        return io.NodeOutput(FifoSampler(options, _base_clip_samples(base_clip, options), prompt_schedule,
                                         node_id=getattr(cls.hidden, "unique_id", None),
                                         state=make_state_file(state_file, state_every, resume),
                                         seeding=latent_seeding))


class FIFOSigmasNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FIFOSigmas",
            display_name="FIFO Sigmas",
            category=category("sampling"),
            description=("The DDIM grid FIFO-Diffusion uses, round(linspace(0, 999, f*n)) (it includes t = 0 and "
                         "t = 999; ComfyUI's ddim_uniform scheduler does not give it), as SIGMAS of the model: "
                         "f*n levels, noisiest first, then 0."),
            inputs=[
                io.Model.Input("model", tooltip="The model whose sigma table is used."),
                io.Int.Input("video_length", default=16, min=1, max=256, tooltip="f, as in the FIFO Sampler."),
                io.Int.Input("num_partitions", default=4, min=1, max=64, tooltip="n, as in the FIFO Sampler."),
            ],
            outputs=[io.Sigmas.Output(tooltip="f*n + 1 sigmas for SamplerCustom / SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, video_length, num_partitions):
        options = _options(video_length, num_partitions, False, 0.0, 0, "official")
        return io.NodeOutput(fifo_sigmas(model.get_model_object("model_sampling"), options))


class FIFOSamplerAllInOneNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FIFOSamplerAllInOne",
            display_name="FIFO Sampler (all-in-one)",
            category=category("sampling"),
            description=(
                "Generates a long video with FIFO-Diffusion in one node: CFG guidance, FIFO's DDIM grid, the base "
                "clip and the queue. Memory stays constant whatever the frame count (only the output latent grows). "
                "Output: LATENT [frames, 4, height/8, width/8] for VAE Decode."),
            inputs=[
                io.Model.Input("model", tooltip="VideoCrafter2 MODEL (VideoCrafter2 Checkpoint Loader)."),
                io.Conditioning.Input("positive", tooltip="What the video shows (ignored if a prompt schedule is connected)."),
                io.Conditioning.Input("negative", tooltip="Unconditional prompt; the official code uses the empty prompt."),
                io.Int.Input("frames", default=64, min=1, max=1000000,
                             tooltip="N: number of output frames. Memory does not grow with it (except the output)."),
                io.Int.Input("width", default=512, min=64, max=4096, step=64,
                             tooltip="Frame width in pixels, a multiple of 64 (VideoCrafter2: 512)."),
                io.Int.Input("height", default=320, min=64, max=4096, step=64,
                             tooltip="Frame height in pixels, a multiple of 64 (VideoCrafter2: 320)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of every random draw (base clip, queue, DDIM steps, new tail frames)."),
                io.Float.Input("cfg", default=12.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (official FIFO: 12)."),
                *_option_inputs(),
                io.Int.Input("fps", default=8, min=1, max=120,
                             tooltip="fps conditioning of VideoCrafter2 (official FIFO: 8); not the playback rate."),
                io.Latent.Input("base_clip", optional=True,
                                tooltip="Optional f-frame LATENT to start from instead of sampling a base clip."),
                FifoPromptScheduleType.Input("prompt_schedule", optional=True,
                                             tooltip="Optional FIFO Prompt Schedule replacing positive."),
                *_state_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The video latent, N frames as batch.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, cfg=None, eta=None):
        # as FIFOSamplerNode.validate_inputs, plus the sizes (multiples of 64)
        return check_declared(cls, dict(width=width, height=height, cfg=cfg, eta=eta), SIZES) or True

    @classmethod
    def execute(cls, model, positive, negative, frames, width, height, seed, cfg, video_length, num_partitions,
                lookahead, eta, window_batch, queue_init, fps, base_clip=None, prompt_schedule=None,
                latent_seeding=None, state_file="", state_every=16, resume=False, rescale_steps=False):
        require_declared(cls, dict(frames=frames, width=width, height=height, cfg=cfg, video_length=video_length,
                                   num_partitions=num_partitions, eta=eta, window_batch=window_batch, fps=fps,
                                   state_every=state_every), SIZES)
        options = _options(video_length, num_partitions, lookahead, eta, window_batch, queue_init, rescale_steps)
        base = _base_clip_samples(base_clip, options)
        channels = model.model.latent_format.latent_channels
        latent = torch.zeros([frames, channels, height // 8, width // 8],
                             device=comfy.model_management.intermediate_device())
        if base is not None and tuple(base.shape[1:]) != tuple(latent.shape[1:]):
            raise ValueError(f"base_clip latent frames are {'x'.join(map(str, base.shape[1:]))} but width x height "
                             f"{width}x{height} gives {'x'.join(map(str, latent.shape[1:]))}: set width and height to "
                             f"{base.shape[3] * 8}x{base.shape[2] * 8}")
        values = {"fps": fps}
        prompts = prompt_schedule.with_values(values) if prompt_schedule is not None else None
        model = fifo_model(model)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(node_helpers.conditioning_set_values(positive, values),
                         node_helpers.conditioning_set_values(negative, values))
        guider.set_cfg(cfg)
        sampler = FifoSampler(options, base, prompts, node_id=getattr(cls.hidden, "unique_id", None),
                              state=make_state_file(state_file, state_every, resume), seeding=latent_seeding)
        sigmas = fifo_sigmas(model.get_model_object("model_sampling"), options)
        total = options.iterations(frames)
        callback = latent_preview.prepare_callback(model, total)
        try:
            samples = guider.sample(torch.zeros_like(latent), latent, sampler, sigmas, callback=callback,
                                    disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        except (FifoError, PromptScheduleError) as error:
            raise ValueError(str(error)) from error
        return io.NodeOutput({"samples": samples.to(comfy.model_management.intermediate_device())})


class FIFOPromptScheduleNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FIFOPromptSchedule",
            display_name="FIFO Prompt Schedule",
            category=category("sampling"),
            description=(
                "Adds one prompt to a FIFO prompt schedule (chain these nodes, first prompt first). Each prompt "
                "covers `frames` output frames; as in the official multi-prompt FIFO, the whole queue switches "
                "prompt when the popped frame crosses the boundary. `transition` blends the text embeddings of the "
                "previous and this prompt over that many frames (0 = the official hard switch). The frame counts "
                "must add up to at least the video's frame count."),
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The prompt (CLIP Text Encode)."),
                io.Int.Input("frames", default=32, min=1, max=1000000,
                             tooltip="How many output frames this prompt covers."),
                io.Int.Input("transition", default=0, min=0, max=100000,
                             tooltip="Frames over which the text embedding blends from the previous prompt into "
                                     "this one (ignored for the first prompt)."),
                FifoPromptScheduleType.Input("previous", optional=True,
                                             tooltip="The schedule so far (earlier prompts)."),
            ],
            outputs=[FifoPromptScheduleType.Output(tooltip="The schedule with this prompt appended.")],
        )

    @classmethod
    def execute(cls, conditioning, frames, transition, previous=None):
        chain = previous if previous is not None else FifoPromptList()
        chain = chain.appended(conditioning, frames, transition)
        try:
            chain.schedule()
        except PromptScheduleError as error:
            raise ValueError(str(error)) from error
        return io.NodeOutput(chain)


NODES = [FIFOSamplerNode, FIFOSigmasNode, FIFOSamplerAllInOneNode, FIFOPromptScheduleNode]
