"""FIFO-Diffusion nodes: the FIFO SAMPLER for SamplerCustom / SamplerCustomAdvanced, its sigmas, an all-in-one
node and multi-prompt schedules. They declare inputs and build option objects; the ComfyUI glue is
`bridge/fifo.py`, the algorithm `samplers/fifo.py` (docs/fifo.md).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..bridge.fifo import FifoSampler, fifo_sigmas, generate_video
from ..bridge.fifo_conditioning import FifoPromptList
from ..bridge.state_file import StateFile, make_state_file
from ..samplers.fifo import FifoOptions
from .common import NODE_PREFIX, FifoPromptScheduleType, LatentSeedingType, category
from .inputs import PIXEL_SIZES, check_declared, devices_error, devices_input, fps_input, option_input, \
    require_declared, size_inputs


def _frame_inputs() -> list:
    """f and n: the two options FIFO Sigmas shares with the samplers."""
    return [
        option_input(FifoOptions, "video_length",
                     "f: frames per model call, the model's training clip length (VideoCrafter2: 16). "
                     "Must be even with lookahead."),
        option_input(FifoOptions, "num_partitions",
                     "n: latent partitions. The queue holds f*n frames at f*n DDIM levels; more partitions "
                     "= smaller noise spread inside one call (paper: better quality), more compute per frame."),
    ]


def _option_inputs() -> list:
    return _frame_inputs() + [
        option_input(FifoOptions, "lookahead",
                     "Lookahead denoising: 2n half-overlapping windows, each updating only its noisier half "
                     "with f/2 cleaner frames as context (paper default; twice the compute)."),
        option_input(FifoOptions, "eta",
                     "DDIM eta of the FIFO step and the base clip. 1 = the official default (stochastic), "
                     "0 = deterministic DDIM.", step=0.01),
        option_input(FifoOptions, "window_batch",
                     "Windows per model call: 0 = all windows of one iteration in one batch (fastest), "
                     "lower to save memory. The result does not depend on it."),
        option_input(FifoOptions, "queue_init",
                     "How the queue starts from the base clip: official (frame 0 repeated for the first "
                     "S-f+1 slots) or uniform (FIFO+ 'unilatent': each base frame repeated n times)."),
    ]


def _run_inputs(schedule_tooltip: str, base_clip_tooltip: str) -> list:
    """The optional inputs both samplers end with: base clip, prompt schedule, latent seeding, state file, rescale,
    devices."""
    return [
        io.Latent.Input("base_clip", optional=True, tooltip=base_clip_tooltip),
        FifoPromptScheduleType.Input("prompt_schedule", optional=True, tooltip=schedule_tooltip),
        LatentSeedingType.Input("latent_seeding", optional=True,
                                tooltip="Optional FIFO Latent Seeding (FIFO+): the queue's first frame, embedded as an "
                                        "image, conditions the whole run (needs a VideoCrafter1 image-to-video model)."),
        io.String.Input("state_file", default="", optional=True,
                        tooltip="Optional: a file name under ComfyUI's output folder (e.g. fifo_state/my_video) where "
                                "the run saves its queue, noise state and frames so far, so it can be resumed after "
                                "a crash or an interruption, or continued to more frames. Empty = no state file."),
        option_input(StateFile, "every", name="state_every", optional=True,
                     tooltip="Write the state file every this many output frames (0: only at the end and when the "
                             "run stops early). Each write stores all frames so far (about 40 KB per 512x320 frame)."),
        option_input(StateFile, "resume", optional=True,
                     tooltip="Continue from state_file instead of starting from the seed: the result is exactly "
                             "what an uninterrupted run would have made. Raise the frame count to extend a "
                             "finished run. f, n, lookahead, eta, queue_init, rescale_steps and the size must "
                             "match the run that wrote it; prompts may change."),
        option_input(FifoOptions, "rescale", name="rescale_steps", optional=True,
                     tooltip="Apply VideoCrafter2's rescaled noise schedule (scale_arr) in the queue and every "
                             "FIFO step, as its own DDIM does for the base clip. Off = the official FIFO-Diffusion "
                             "(plain DDIM steps). On follows the model's training; on the bundled tiny model it "
                             "keeps the prompt's colour longer (README, Quality)."),
        devices_input("windows", "the windows of every model call are split into one group per entry (with "
                                 "window_batch 0 every iteration is one call)."),
    ]


def _sampler(cls, video_length, num_partitions, lookahead, eta, window_batch, queue_init, base_clip,
             prompt_schedule, latent_seeding, state_file, state_every, resume, rescale_steps, devices) -> FifoSampler:
    """The FifoSampler both nodes run (FifoError, a ValueError, names a bad option)."""
    options = FifoOptions(video_length=video_length, num_partitions=num_partitions, lookahead=lookahead, eta=eta,
                          window_batch=window_batch, queue_init=queue_init, rescale=rescale_steps)
    return FifoSampler(options, base_clip["samples"] if base_clip is not None else None, prompt_schedule,
                       node_id=getattr(cls.hidden, "unique_id", None),
                       state=make_state_file(state_file, state_every, resume), seeding=latent_seeding,
                       devices=devices)


class FIFOInfinityFIFOSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}FIFOSampler",
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
            inputs=_option_inputs() + _run_inputs(
                schedule_tooltip="Optional FIFO Prompt Schedule: replaces the guider's positive prompt with several "
                                 "prompts over the video.",
                base_clip_tooltip="Optional f-frame LATENT to build the queue from instead of sampling one (same "
                                  "latent size as the video)."),
            outputs=[io.Sampler.Output(tooltip="The FIFO sampler, for SamplerCustom / SamplerCustomAdvanced.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, eta=None, devices=None):
        # Names only what ComfyUI's own per-input check misses (NaN passes it) and devices that cannot work; the
        # rules across f, n and lookahead and the state file are checked when the node runs, before any sampling.
        return check_declared(cls, dict(eta=eta)) or devices_error(devices) or True

    @classmethod
    def execute(cls, video_length, num_partitions, lookahead, eta, window_batch, queue_init, base_clip=None,
                prompt_schedule=None, latent_seeding=None, state_file="", state_every=16, resume=False,
                rescale_steps=False, devices=""):
        require_declared(cls, dict(video_length=video_length, num_partitions=num_partitions, eta=eta,
                                   window_batch=window_batch, state_every=state_every))
        return io.NodeOutput(_sampler(cls, video_length, num_partitions, lookahead, eta, window_batch, queue_init,
                                      base_clip, prompt_schedule, latent_seeding, state_file, state_every, resume,
                                      rescale_steps, devices))


class FIFOInfinityFIFOSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}FIFOSigmas",
            display_name="FIFO Sigmas",
            category=category("sampling"),
            description=("The DDIM grid FIFO-Diffusion uses, round(linspace(0, 999, f*n)) (it includes t = 0 and "
                         "t = 999; ComfyUI's ddim_uniform scheduler does not give it), as SIGMAS of the model: "
                         "f*n levels, noisiest first, then 0."),
            inputs=[io.Model.Input("model", tooltip="The model whose sigma table is used."), *_frame_inputs()],
            outputs=[io.Sigmas.Output(tooltip="f*n + 1 sigmas for SamplerCustom / SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, video_length, num_partitions):
        options = FifoOptions(video_length=video_length, num_partitions=num_partitions, lookahead=False)
        return io.NodeOutput(fifo_sigmas(model.get_model_object("model_sampling"), options))


class FIFOInfinityFIFOSamplerAllInOne(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}FIFOSamplerAllInOne",
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
                *size_inputs(),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of every random draw (base clip, queue, DDIM steps, new tail frames)."),
                io.Float.Input("cfg", default=12.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (official FIFO: 12)."),
                *_option_inputs(),
                fps_input("fps conditioning of VideoCrafter2 (official FIFO: 8); not the playback rate."),
                *_run_inputs(schedule_tooltip="Optional FIFO Prompt Schedule replacing positive.",
                             base_clip_tooltip="Optional f-frame LATENT to start from instead of sampling a base clip."),
            ],
            outputs=[io.Latent.Output(tooltip="The video latent, N frames as batch.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, cfg=None, eta=None, devices=None):
        # as the FIFO Sampler's validate_inputs, plus the sizes (multiples of 64)
        return (check_declared(cls, dict(width=width, height=height, cfg=cfg, eta=eta), PIXEL_SIZES)
                or devices_error(devices) or True)

    @classmethod
    def execute(cls, model, positive, negative, frames, width, height, seed, cfg, video_length, num_partitions,
                lookahead, eta, window_batch, queue_init, fps, base_clip=None, prompt_schedule=None,
                latent_seeding=None, state_file="", state_every=16, resume=False, rescale_steps=False, devices=""):
        require_declared(cls, dict(frames=frames, width=width, height=height, cfg=cfg, video_length=video_length,
                                   num_partitions=num_partitions, eta=eta, window_batch=window_batch, fps=fps,
                                   state_every=state_every), PIXEL_SIZES)
        sampler = _sampler(cls, video_length, num_partitions, lookahead, eta, window_batch, queue_init, base_clip,
                           prompt_schedule, latent_seeding, state_file, state_every, resume, rescale_steps, devices)
        return io.NodeOutput(generate_video(model, positive, negative, sampler, frames, width, height, seed, cfg, fps))


class FIFOInfinityFIFOPromptSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}FIFOPromptSchedule",
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
        return io.NodeOutput(chain.appended(conditioning, frames, transition))


NODES = [FIFOInfinityFIFOSampler, FIFOInfinityFIFOSigmas, FIFOInfinityFIFOSamplerAllInOne,
         FIFOInfinityFIFOPromptSchedule]
