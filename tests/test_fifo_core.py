"""The FIFO-Diffusion core (`samplers/`) against the official code's outputs, plus its logic and errors.

Fixtures: $FIFO_REFERENCE_DIR (default ../shared/reference/vc2_tiny): `fifo.safetensors`, `stages.safetensors`
and every size from `manifest.json`. The model is the tiny VideoCrafter2's UNet called directly, with CFG
`e = e_u + cfg (e_c - e_u)`, cond = `text.embeddings[1]`, uncond = `text.embeddings[0]`, fps from the manifest.
Tolerance (docs/fifo.md, "Parity with the official code"): full samplings within 1e-4 x max|reference|. Run
with `-s` to see the measured errors.
"""

import os

import pytest
import safetensors.torch
import torch

from fifo_infinity.samplers import ddim, fifo, prompt_schedule as schedule

RELATIVE_TOLERANCE = 1e-4


def to_frames(video):
    """Official `[1, C, T, h, w]` -> frames as batch `[T, C, h, w]`."""
    return video[0].transpose(0, 1)


def report(name, error, scale):
    print(f"\n[fifo parity] {name}: max abs error {error:.3g}, max |reference| {scale:.3g}, "
          f"relative {error / scale:.3g}")


@pytest.fixture(scope="module")
def stages(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "stages.safetensors"))


@pytest.fixture(scope="module")
def reference(reference_dir):
    return safetensors.torch.load_file(os.path.join(reference_dir, "fifo.safetensors"))


@pytest.fixture(scope="module")
def settings(manifest):
    m = manifest["fifo"]
    options = fifo.FifoOptions(video_length=m["video_length_f"], num_partitions=m["num_partitions_n"],
                               lookahead=m["lookahead_denoising"], eta=0.0)
    assert options.steps == m["ddim_steps"]
    assert options.iterations(m["new_frames_N"]) == m["iterations"]
    return dict(options=options, frames=m["new_frames_N"], cfg=m["cfg_scale"], fps=m["fps"],
                latent_hw=tuple(manifest["latent_hw"]))


class CfgUNet:
    """`eps(x [W*f, C, h, w], timesteps [W*f])` of the tiny UNet with CFG, cond and uncond in one batch.

    Counts calls and frames; `mix` (multi-prompt) selects the cond embedding as a weighted sum of `conds`.
    """

    def __init__(self, unet, conds, uncond, cfg, fps, video_length):
        self.unet, self.conds, self.uncond = unet, conds, uncond
        self.cfg, self.fps, self.video_length = cfg, fps, video_length
        self.calls, self.frames = 0, 0

    def __call__(self, x, timesteps, mix=((0, 1.0),)):
        n = x.shape[0]
        cond = sum(w * self.conds[j] for j, w in mix)
        context = torch.cat([cond.expand(n, -1, -1), self.uncond.expand(n, -1, -1)])
        with torch.no_grad():
            e = self.unet(torch.cat([x, x]), torch.cat([timesteps, timesteps]).float(), context=context,
                          transformer_options={"video_length": self.video_length},
                          fps=torch.full((2 * n,), float(self.fps)))
        self.calls += 1
        self.frames += n
        e_c, e_u = e[:n], e[n:]
        return e_u + self.cfg * (e_c - e_u)


@pytest.fixture(scope="module")
def model(tiny_model, stages, settings):
    embeddings = stages["text.embeddings"]
    return CfgUNet(tiny_model[0].model.diffusion_model, [embeddings[1:2]], embeddings[0:1], settings["cfg"],
                   settings["fps"], settings["options"].video_length)


class FixtureNoise:
    """NoiseSource replaying the noise recorded in `fifo.safetensors` for one eta."""

    def __init__(self, reference, eta):
        self.init = to_frames(reference[f"fifo.eta{eta}.init_noise"])
        self.append = to_frames(reference[f"fifo.eta{eta}.appended_noise"])
        self.step = reference.get(f"fifo.eta{eta}.step_noise")

    def __call__(self, kind, index, shape):
        if kind == "queue_init":
            out = self.init
        elif kind == "append":
            out = self.append[index:index + 1]
        elif kind == "step":
            assert self.step is not None, "step noise requested for a deterministic (eta 0) run"
            out = to_frames(self.step[index])
        else:
            raise AssertionError(f"unexpected noise request {kind}")
        assert tuple(out.shape) == tuple(shape), (kind, tuple(out.shape), shape)
        return out


# ---------------------------------------------------------------- schedule

def test_parity_schedule_buffers(stages):
    assert torch.equal(ddim.alphas_cumprod(), stages["schedule.alphas_cumprod"])
    assert torch.equal(ddim.rescale_table(), stages["schedule.scale_arr"])


def test_ddim_grid_matches_the_spec_table():
    """docs/fifo.md, "The DDIM grid", S = 64, eta = 1: grid includes 0 and 999, a_prev[0] = a[0], sigma_0 = 0."""
    s = ddim.DDIMSchedule.build(64, eta=1.0)
    assert s.timesteps[:9].tolist() == [0, 16, 32, 48, 63, 79, 95, 111, 127]
    assert s.timesteps[-2:].tolist() == [983, 999]
    rows = {0: (0.99914998, 0.99914998, 0.0, 0.02915513, 1.0, 1.0),
            1: (0.98500896, 0.99914998, 0.02832854, 0.12243792, 0.987970, 1.0),
            26: (0.40539190, 0.43090722, 0.23805907, 0.77110833, 0.700000, 0.702256),
            63: (0.00466010, 0.00564102, 0.41679665, 0.99766725, 0.7, 0.7)}
    for k, (a, ap, sigma, s1m, scale, scale_prev) in rows.items():
        got = (s.alphas[k], s.alphas_prev[k], s.sigmas[k], s.sqrt_one_minus_alphas[k], s.scales[k], s.scales_prev[k])
        for value, expected in zip(got, (a, ap, sigma, s1m, scale, scale_prev)):
            assert abs(float(value) - expected) < 6e-7, (k, float(value), expected)
    for tensor in (s.alphas, s.alphas_prev, s.sigmas, s.sqrt_one_minus_alphas):
        assert tensor.dtype == torch.float32
    assert float(ddim.DDIMSchedule.build(64, eta=0.0).sigmas.abs().max()) == 0.0


@pytest.mark.parametrize("eta", [0, 1])
def test_parity_queue_levels(reference, settings, eta):
    options = settings["options"]
    timesteps, indices = fifo.queue_levels(options, ddim.DDIMSchedule.build(options.steps, float(eta)))
    assert torch.equal(timesteps, reference[f"fifo.eta{eta}.timesteps"])
    assert torch.equal(indices, reference[f"fifo.eta{eta}.ddim_indices"])


def test_window_table_of_the_default_settings():
    """docs/fifo.md, "Lookahead denoising", the table (f = 16, n = 4, lookahead): window 7 reads 56-71 and writes
    64-71 ... window 0 reads 0-15."""
    windows = fifo.FifoOptions().windows()
    assert [(w.rank, w.start, w.write_start, w.end) for w in windows] == [
        (r, 8 * r, 8 * r + 8, 8 * r + 16) for r in range(7, -1, -1)]
    plain = fifo.FifoOptions(lookahead=False).windows()
    assert [(w.start, w.write_start, w.end) for w in plain] == [(48, 48, 64), (32, 32, 48), (16, 16, 32), (0, 0, 16)]
    options = fifo.FifoOptions(window_batch=3)
    assert [len(g) for g in options.window_groups()] == [3, 3, 2]
    assert options.queue_length == 72 and options.head == 8 and options.warmup == 48
    assert fifo.FifoOptions(lookahead=False).queue_length == 64 and fifo.FifoOptions(lookahead=False).head == 0


# ---------------------------------------------------------------- parity with the official code

@pytest.mark.parametrize("eta", [0, 1])
def test_parity_queue_init(reference, settings, eta):
    options = settings["options"]
    built = fifo.init_queue(to_frames(reference[f"base.eta{eta}.latents"]), ddim.DDIMSchedule.build(options.steps, eta),
                            options, to_frames(reference[f"fifo.eta{eta}.init_noise"]))
    expected = to_frames(reference[f"fifo.eta{eta}.queue_init"])
    assert built.shape == expected.shape == (options.queue_length, 4, *settings["latent_hw"])
    error, scale = (built - expected).abs().max().item(), expected.abs().max().item()
    report(f"queue_init eta{eta}", error, scale)
    assert error <= 1e-6 * scale


@pytest.mark.parametrize("eta", [0, 1])
def test_parity_base_clip(reference, settings, model, eta):
    """VideoCrafter2's own DDIM with its rescale schedule, eta and recorded step noise."""
    options = settings["options"]
    s = ddim.DDIMSchedule.build(options.steps, float(eta))
    recorded = reference.get(f"base.eta{eta}.step_noise")

    def step_noise(i, shape):
        assert recorded is not None, "step noise requested at eta 0"
        return to_frames(recorded[i])

    clip = ddim.sample_base_clip(model, to_frames(reference[f"base.eta{eta}.x_T"]), s, step_noise=step_noise)
    expected = to_frames(reference[f"base.eta{eta}.latents"])
    error, scale = (clip - expected).abs().max().item(), expected.abs().max().item()
    report(f"base clip eta{eta}", error, scale)
    assert error <= RELATIVE_TOLERANCE * scale


def within_tolerance(got, expected):
    """The parity criterion of full samplings: max |got - expected| <= RELATIVE_TOLERANCE x max |expected|."""
    return got.shape == expected.shape and \
        (got - expected).abs().max().item() <= RELATIVE_TOLERANCE * expected.abs().max().item()


@pytest.fixture(scope="module")
def core_runs(reference, settings, model):
    """{eta: (every iteration's popped head frame, the N output frames)} of the core replaying the fixture's
    base clip and recorded noise (one run per eta, shared by the parity and discrimination tests)."""
    runs = {}
    for eta in (0, 1):
        options = fifo.FifoOptions(video_length=settings["options"].video_length,
                                   num_partitions=settings["options"].num_partitions,
                                   lookahead=settings["options"].lookahead, eta=float(eta))
        popped = []
        base = to_frames(reference[f"base.eta{eta}.latents"])
        output = fifo.fifo_sample(model, fifo.FifoRun(options, settings["frames"], base.shape[1:],
                                                 FixtureNoise(reference, eta)), base,
                                  hooks=fifo.FifoHooks(on_frame=lambda i, total, frame: popped.append(frame)))
        runs[eta] = (torch.cat(popped), output)
    return runs


@pytest.mark.parametrize("eta", [0, 1])
@pytest.mark.slow
def test_parity_fifo_popped_latents(reference, settings, core_runs, eta):
    """The full run: every iteration's popped head frame (warm-up included) and the N kept frames."""
    popped, output = core_runs[eta]
    expected = to_frames(reference[f"fifo.eta{eta}.popped"])
    assert popped.shape == expected.shape
    error, scale = (popped - expected).abs().max().item(), expected.abs().max().item()
    worst = (popped - expected).abs().flatten(1).max(1).values
    report(f"popped eta{eta} ({len(popped)} iterations; worst at iteration {int(worst.argmax())})", error, scale)
    assert error <= RELATIVE_TOLERANCE * scale
    assert torch.equal(output, popped[settings["options"].warmup:])


@pytest.mark.slow
def test_parity_fixture_discriminates_fifo_mistakes(reference, settings, model, core_runs):
    """The comparisons above tell right from wrong: each of these mistakes fails them.
    - a one-slot shift (the frame one iteration, i.e. one queue slot, early or late);
    - a wrong DDIM level (every level one timestep lower, t - 1, when the queue is built);
    - a missing rescale (the base clip by plain DDIM instead of VideoCrafter2's rescaled one)."""
    options = settings["options"]
    for eta in (0, 1):
        popped, _ = core_runs[eta]
        expected = to_frames(reference[f"fifo.eta{eta}.popped"])
        assert within_tolerance(popped, expected)
        assert not within_tolerance(popped[1:], expected[:-1]) and not within_tolerance(popped[:-1], expected[1:])
    sched = ddim.DDIMSchedule.build(options.steps, 0.0)
    base = to_frames(reference["base.eta0.latents"])
    noise = to_frames(reference["fifo.eta0.init_noise"])
    expected = to_frames(reference["fifo.eta0.queue_init"])
    assert within_tolerance(fifo.init_queue(base, sched, options, noise), expected)
    shifted = ddim.DDIMSchedule.build(timesteps=(sched.timesteps - 1).clamp(min=0), eta=0.0)
    assert not within_tolerance(fifo.init_queue(base, shifted, options, noise), expected)
    x_T = to_frames(reference["base.eta0.x_T"])
    expected = to_frames(reference["base.eta0.latents"])
    assert within_tolerance(ddim.sample_base_clip(model, x_T, sched, rescale=True), expected)
    assert not within_tolerance(ddim.sample_base_clip(model, x_T, sched, rescale=False), expected)


def run_iterations(model, reference, base, options, iterations):
    """`iterations` FIFO iterations from the reference queue set-up at eta 1 with the recorded noise:
    (queue after the last shift, popped frames)."""
    s = ddim.DDIMSchedule.build(options.steps, options.eta)
    timesteps, indices = fifo.queue_levels(options, s)
    noise = FixtureNoise(reference, 1)
    queue = fifo.init_queue(base, s, options, noise("queue_init", 0, (options.queue_length, *base.shape[1:])))
    popped = []
    for i in range(iterations):
        fifo.denoise_windows(queue, model, s, timesteps, indices, options, noise("step", i, tuple(queue.shape)))
        popped.append(queue[options.head].clone())
        queue = torch.cat([queue[1:], noise("append", i, (1, *base.shape[1:]))])
    return queue, torch.stack(popped)


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
def test_batched_windows_equal_sequential(reference, settings, model):
    """All 2n windows in one UNet call and one window per call (the official in-place tail-first order) give
    identical latents in fp32: two iterations at eta 1 with the recorded noise.

    With PyTorch's own convolutions: oneDNN (mkldnn) picks its 3D-convolution algorithm by batch size, which
    changes the rounding of the UNet itself (up to about 1e-6 on these values) whatever the sampler does; the
    FIFO core adds no difference of its own."""
    base = to_frames(reference["base.eta1.latents"])
    results = {}
    with torch.backends.mkldnn.flags(enabled=False):
        for window_batch in (1, 0):
            options = fifo.FifoOptions(video_length=settings["options"].video_length,
                                       num_partitions=settings["options"].num_partitions,
                                       lookahead=settings["options"].lookahead, eta=1.0, window_batch=window_batch)
            calls = model.calls
            results[window_batch] = run_iterations(model, reference, base, options, 2)
            assert model.calls - calls == 2 * len(options.window_groups())
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


# ---------------------------------------------------------------- queue logic (a cheap stand-in model)

class WindowMixer:
    """A cheap deterministic eps model that, like the UNet, mixes the frames of each window (per-window mean)
    and depends on each frame's timestep; records the calls it gets."""

    def __init__(self, video_length):
        self.video_length = video_length
        self.calls = []

    def __call__(self, x, timesteps, mix=None):
        self.calls.append((tuple(x.shape), timesteps.clone(), mix))
        windows = x.unflatten(0, (-1, self.video_length))
        mean = windows.mean(dim=1, keepdim=True).expand_as(windows).flatten(0, 1)
        scale = (timesteps.float() / 1000.0 + 0.25).view(-1, 1, 1, 1)
        return torch.tanh(0.05 * x + 0.5 * mean) * scale


def naive_iteration(queue, model, sched, options):
    """Independent replay of one iteration from the references' protocol (docs/fifo.md, "Parity with the official
    code"): every window reads a snapshot,
    each written slot takes its own DDIM step (eta 0; with `options.rescale`, VideoCrafter2's rescaled step:
    x0 / scale_arr[tau_j], then times scale_arr[tau_{j-1}])."""
    snapshot = queue.clone()
    timesteps, indices = fifo.queue_levels(options, sched)
    f = options.video_length
    out = queue.clone()
    windows = range(2 * options.num_partitions) if options.lookahead else range(options.num_partitions)
    for r in windows:
        start = r * (f // 2) if options.lookahead else r * f
        eps = model(snapshot[start:start + f], timesteps[start:start + f])
        first = f // 2 if options.lookahead else 0
        for k in range(first, f):
            p = start + k
            j = int(indices[p])
            a, ap = sched.alphas[j], sched.alphas_prev[j]
            x0 = (snapshot[p] - (1 - a).sqrt() * eps[k]) / a.sqrt()
            if options.rescale:
                x0 = x0 / ddim.rescale_table()[sched.timesteps[j]] * ddim.rescale_table()[sched.timesteps[max(j - 1, 0)]]
            out[p] = ap.sqrt() * x0 + (1 - ap).sqrt() * eps[k]
    return out


@pytest.mark.parametrize("lookahead, rescale", [(True, False), (False, False), (True, True)])
def test_iteration_reads_the_pre_iteration_queue(lookahead, rescale):
    options = fifo.FifoOptions(video_length=4, num_partitions=3, lookahead=lookahead, eta=0.0, rescale=rescale)
    sched = ddim.DDIMSchedule.build(options.steps, 0.0)
    queue = torch.randn(options.queue_length, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    model = WindowMixer(options.video_length)
    expected = naive_iteration(queue, model, sched, options)
    timesteps, indices = fifo.queue_levels(options, sched)
    got = fifo.denoise_windows(queue.clone(), model, sched, timesteps, indices, options)
    assert (got - expected).abs().max() < 1e-5
    if lookahead:   # the f/2 context slots are never written
        assert torch.equal(got[:options.lookahead_slots], queue[:options.lookahead_slots])


@pytest.mark.parametrize("lookahead", [True, False])
def test_window_grouping_gives_identical_latents(lookahead):
    """Every window_batch gives bit-identical output (eta 1, seeded noise), with the expected call shapes."""
    outputs = {}
    for window_batch in (1, 2, 3, 5, 0):
        options = fifo.FifoOptions(video_length=4, num_partitions=3, lookahead=lookahead, eta=1.0,
                                   window_batch=window_batch)
        model = WindowMixer(options.video_length)
        base = torch.randn(4, 4, 2, 3, generator=torch.Generator().manual_seed(1))
        outputs[window_batch] = fifo.fifo_sample(model, fifo.FifoRun(options, 5, base.shape[1:], fifo.GeneratorNoise(7)), base)
        per_call = options.windows_per_call
        assert model.calls[0][0] == (per_call * options.video_length, 4, 2, 3)
        assert len(model.calls) == options.iterations(5) * len(options.window_groups())
    for window_batch, out in outputs.items():
        assert torch.equal(out, outputs[1]), window_batch


def test_popped_frame_is_the_head_and_output_keeps_the_last_n():
    options = fifo.FifoOptions(video_length=4, num_partitions=2, lookahead=True, eta=0.0)
    model = WindowMixer(4)
    popped = []
    base = torch.randn(4, 4, 2, 3, generator=torch.Generator().manual_seed(2))
    out = fifo.fifo_sample(model, fifo.FifoRun(options, 3, base.shape[1:], fifo.GeneratorNoise(3)), base,
                           hooks=fifo.FifoHooks(on_frame=lambda i, total, frame: popped.append((i, total, frame))))
    assert [i for i, _, _ in popped] == list(range(options.iterations(3)))
    assert all(total == 3 + options.warmup for _, total, _ in popped)
    assert torch.equal(out, torch.cat([frame for _, _, frame in popped])[options.warmup:])
    # the timesteps each call sees: lookahead slots at tau_0, then tau_0..tau_{S-1}, tail at 999
    sched = ddim.DDIMSchedule.build(options.steps, 0.0)
    timesteps, _ = fifo.queue_levels(options, sched)
    assert torch.equal(model.calls[0][1], torch.cat([timesteps[w.start:w.end] for w in options.windows()]))
    assert int(model.calls[0][1][options.video_length - 1]) == 999      # tail window first; its last slot is the tail


def test_rescale_option_noises_the_queue_and_steps_as_videocrafter2s_training():
    """rescale: slot i holds sqrt(a_i) scale_arr[tau_i] z (+ noise); the steps differ from the official ones only
    where scale_arr changes (tau < 400)."""
    options = fifo.FifoOptions(video_length=4, num_partitions=3, eta=0.0, rescale=True)
    sched = ddim.DDIMSchedule.build(options.steps, 0.0)
    base = torch.full((4, 2, 2, 2), 2.0)
    queue = fifo.init_queue(base, sched, options, torch.zeros(options.queue_length, 2, 2, 2))
    scale_arr = ddim.rescale_table()
    expected = [2.0 * float(sched.alphas[i].sqrt() * scale_arr[sched.timesteps[i]]) for i in range(options.steps)]
    assert torch.allclose(queue[options.lookahead_slots:, 0, 0, 0], torch.tensor(expected))
    official = fifo.FifoOptions(video_length=4, num_partitions=3, eta=0.0)
    queue = torch.randn(options.queue_length, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    timesteps, indices = fifo.queue_levels(options, sched)
    model = WindowMixer(options.video_length)
    plain = fifo.denoise_windows(queue.clone(), model, sched, timesteps, indices, official)
    rescaled = fifo.denoise_windows(queue.clone(), model, sched, timesteps, indices, options)
    changed = (rescaled - plain).flatten(1).abs().amax(1) > 1e-6
    assert changed.any() and torch.equal(changed, (sched.scales_prev[indices] != sched.scales[indices]))


def test_uniform_queue_init_repeats_each_base_frame_n_times():
    options = fifo.FifoOptions(video_length=4, num_partitions=3, lookahead=True, eta=0.0, queue_init="uniform")
    sched = ddim.DDIMSchedule.build(options.steps, 0.0)
    base = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 2, 2) + 1.0
    queue = fifo.init_queue(base, sched, options, torch.zeros(options.queue_length, 2, 2, 2))
    sources = [round(float(queue[options.lookahead_slots + i, 0, 0, 0] / sched.alphas[i].sqrt())) - 1
               for i in range(options.steps)]
    assert sources == [i // 3 for i in range(12)]
    official = fifo.init_queue(base, sched, fifo.FifoOptions(video_length=4, num_partitions=3, eta=0.0),
                               torch.zeros(options.queue_length, 2, 2, 2))
    sources = [round(float(official[options.lookahead_slots + i, 0, 0, 0] / sched.alphas[i].sqrt())) - 1
               for i in range(options.steps)]
    assert sources == [max(0, i - 8) for i in range(12)]
    assert torch.allclose(queue[:options.lookahead_slots], base[0] * sched.alphas[0].sqrt())


def test_generate_samples_a_rescaled_base_clip_from_the_seed():
    options = fifo.FifoOptions(video_length=4, num_partitions=2, eta=1.0)
    model = WindowMixer(4)
    a = fifo.fifo_generate(model, fifo.FifoRun(options, 3, (4, 2, 3), fifo.GeneratorNoise(11)))
    b = fifo.fifo_generate(model, fifo.FifoRun(options, 3, (4, 2, 3), fifo.GeneratorNoise(11)))
    c = fifo.fifo_generate(model, fifo.FifoRun(options, 3, (4, 2, 3), fifo.GeneratorNoise(12)))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same as composing the parts by hand, drawing noise in the documented order
    noise = fifo.GeneratorNoise(11)
    sched = ddim.DDIMSchedule.build(options.steps, 1.0)
    clip = ddim.sample_base_clip(model, noise("base_x_T", 0, (4, 4, 2, 3)), sched,
                                 step_noise=lambda i, shape: noise("base_step", i, shape), rescale=True)
    assert torch.equal(fifo.fifo_sample(model, fifo.FifoRun(options, 3, clip.shape[1:], noise), clip), a)
    plain = fifo.GeneratorNoise(11)
    unscaled = ddim.sample_base_clip(model, plain("base_x_T", 0, (4, 4, 2, 3)), sched,
                                     step_noise=lambda i, shape: plain("base_step", i, shape), rescale=False)
    assert not torch.equal(unscaled, clip)


# ---------------------------------------------------------------- multi-prompt schedules

def official_prompt_index(iteration, counts, warmup):
    """The official loop's prompt index (fifo_ddim_sampling_multiprompts), replayed iteration by iteration."""
    cumsum = [sum(counts[:j + 1]) for j in range(len(counts))]
    j = 0
    for i in range(iteration + 1):
        if i - warmup >= cumsum[j]:
            j += 1
    return j


def test_schedule_without_transition_is_the_official_switch():
    counts, warmup = (3, 5, 2), 12
    sched = schedule.PromptSchedule(counts)
    for i in range(sum(counts) + warmup):
        assert sched.mix_at_iteration(i, warmup) == ((official_prompt_index(i, counts, warmup), 1.0),), i


def test_schedule_transition_interpolates_over_k_frames():
    sched = schedule.PromptSchedule((4, 4), transition=3)
    assert sched.mix(3) == ((0, 1.0),)
    assert [dict(sched.mix(u)).get(1, 0.0) for u in range(4, 9)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    for u in range(-3, 9):
        assert abs(sum(w for _, w in sched.mix(u)) - 1.0) < 1e-12
    # a segment shorter than the transition: three prompts can blend, weights still sum to 1
    short = schedule.PromptSchedule((2, 1, 3), transition=4)
    for u in range(6):
        assert abs(sum(w for _, w in short.mix(u)) - 1.0) < 1e-12
    assert len(short.mix(3)) == 3
    # one K per boundary
    each = schedule.PromptSchedule((2, 2, 2), transition=(0, 1))
    assert [each.mix(u) for u in (1, 2, 3, 4, 5)] == [((0, 1.0),), ((1, 1.0),), ((1, 1.0),), ((1, 0.5), (2, 0.5)),
                                                      ((2, 1.0),)]
    with pytest.raises(schedule.PromptScheduleError, match="transition = -1 frames into prompt 3"):
        schedule.PromptSchedule((2, 2, 2), transition=(0, -1))


def test_multi_prompt_run_passes_each_iterations_mix():
    options = fifo.FifoOptions(video_length=4, num_partitions=2, eta=0.0, window_batch=2)
    model = WindowMixer(4)
    sched = schedule.PromptSchedule((2, 3), transition=1)
    base = torch.randn(4, 4, 2, 3, generator=torch.Generator().manual_seed(5))
    fifo.fifo_sample(model, fifo.FifoRun(options, 5, base.shape[1:], fifo.GeneratorNoise(0), prompt_schedule=sched), base)
    per_iteration = [model.calls[i * 2][2] for i in range(options.iterations(5))]
    assert per_iteration == [sched.mix_at_iteration(i, options.warmup) for i in range(options.iterations(5))]
    assert per_iteration[options.warmup + 2] == ((0, 0.5), (1, 0.5))


# ---------------------------------------------------------------- errors name the value

@pytest.mark.parametrize("kwargs, words", [
    (dict(video_length=15), ["video_length f = 15", "odd", "lookahead"]),
    (dict(num_partitions=0), ["num_partitions n = 0"]),
    (dict(video_length=0), ["video_length f = 0"]),
    (dict(eta=-0.5), ["eta = -0.5"]),
    (dict(window_batch=-1), ["window_batch = -1"]),
    (dict(queue_init="random"), ["queue_init = 'random'", "official", "uniform"]),
    (dict(video_length=16, num_partitions=100), ["1600"]),
])
def test_bad_options_raise_clear_errors(kwargs, words):
    with pytest.raises(fifo.FifoError) as error:
        fifo.FifoOptions(**kwargs)
    for word in words:
        assert word in str(error.value)


def test_odd_video_length_is_fine_without_lookahead():
    assert fifo.FifoOptions(video_length=15, lookahead=False).queue_length == 60


def test_bad_inputs_raise_clear_errors():
    options = fifo.FifoOptions(video_length=4, num_partitions=2, eta=0.0)
    model = WindowMixer(4)
    base = torch.zeros(4, 4, 2, 3)
    with pytest.raises(fifo.FifoError, match="frames N = 0"):
        fifo.fifo_sample(model, fifo.FifoRun(options, 0, base.shape[1:], fifo.GeneratorNoise(0)), base)
    with pytest.raises(fifo.FifoError, match="base clip has 6 frames but video_length f = 4"):
        fifo.fifo_sample(model, fifo.FifoRun(options, 3, (4, 2, 3), fifo.GeneratorNoise(0)), torch.zeros(6, 4, 2, 3))
    with pytest.raises(fifo.FifoError, match=r"4x5x6 .* 4x2x3"):
        fifo.fifo_generate(model, fifo.FifoRun(options, 3, (4, 2, 3), fifo.GeneratorNoise(0)), torch.zeros(4, 4, 5, 6))
    with pytest.raises(schedule.PromptScheduleError, match=r"sum to 5 \(2 \+ 3\), fewer than the 8 frames"):
        fifo.fifo_sample(model, fifo.FifoRun(options, 8, base.shape[1:], fifo.GeneratorNoise(0),
                                             prompt_schedule=schedule.PromptSchedule((2, 3))), base)
    with pytest.raises(schedule.PromptScheduleError, match="prompt 2 of the schedule has frames = 0"):
        schedule.PromptSchedule((2, 0))
    with pytest.raises(fifo.FifoError, match="grid has 10 levels but the queue needs f \\* n = 4 \\* 2 = 8"):
        fifo.fifo_sample(model, fifo.FifoRun(options, 2, base.shape[1:], fifo.GeneratorNoise(0),
                                             schedule=ddim.DDIMSchedule.build(10)), base)
