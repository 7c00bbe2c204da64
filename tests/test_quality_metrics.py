"""benchmarks/quality.py's detector and metrics on clips of the training world, whose truth is known."""

import importlib.util
import os

import numpy as np
import pytest

from conftest import PACK_DIR


def load_tool(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(PACK_DIR, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quality = load_tool("fifo_quality", "benchmarks/quality.py")
train = load_tool("train_tiny_model", "tools/train_tiny_model.py")


def one_object_clip(seed, colour, frames=16):
    rng = np.random.default_rng(seed)
    while True:
        video, caption, objects = train.make_clip(rng, frames)
        if len(objects) == 1 and objects[0]["colour"] == colour:
            return video, objects[0]


def test_palette_and_background_agree_with_the_training_world():
    assert quality.PALETTE == train.COLOURS
    assert quality.BACKGROUND == train.BACKGROUND


def test_detector_finds_colour_and_centroid():
    for seed, colour in enumerate(quality.PALETTE):
        video, obj = one_object_clip(seed, colour)
        found = quality.detect(video, colour)
        assert found["visible"].all()
        assert found["dominant"] == [colour] * len(video)
        error = np.abs(found["centroids"] - obj["centres"]).max()
        assert error < 0.75, (colour, error)
    empty = np.empty((4, 64, 64, 3), np.uint8)
    empty[:] = quality.BACKGROUND
    assert not quality.detect(empty)["visible"].any()


def test_boundary_jumps_and_drift_of_concatenated_clips():
    a, _ = one_object_clip(1, "red")
    b, _ = one_object_clip(2, "red")
    long_a, _ = one_object_clip(1, "red", frames=32)
    cut = quality.measure(np.concatenate([a, b]), "red")
    smooth = quality.measure(long_a, "red")
    assert smooth["max_jump"] < 3.5 * np.sqrt(2)         # speeds are at most 3.2 px per frame
    assert cut["max_jump"] > 5 and cut["jump_boundary"] > cut["jump_inside"]
    assert cut["jump_ratio"] > 2
    assert smooth["colour_drift"] < 1 and smooth["colour_ok"] == 1.0 and smooth["visible"] == 1.0
    blue, _ = one_object_clip(3, "blue")
    drift = quality.measure(np.concatenate([a, blue]), "red")
    assert drift["colour_drift"] > 100 and drift["colour_ok"] == 0.5


def square_video(xs, y=30, size=8):
    """One red square per frame at the given left edges (pixels), on the world's background."""
    video = np.empty((len(xs), 64, 64, 3), np.uint8)
    video[:] = quality.BACKGROUND
    for frame, x in zip(video, xs):
        frame[y:y + size, x:x + size] = quality.PALETTE["red"]
    return video


def test_jumps_count_teleports_not_motion():
    steady = square_video(range(2, 50, 3))                 # 3 px per frame, the world's speed
    assert quality.measure(steady, "red")["jumps"] == 0
    teleport = square_video([2, 5, 8, 11, 40, 43, 46, 12, 15])   # 29 px forward, 34 px back
    found = quality.measure(teleport, "red")
    assert found["jumps"] == 2 and abs(found["max_jump"] - 34) < 1e-6
    gap = square_video([2, 5, 20, 30, 40, 43])
    gap[2:4] = quality.BACKGROUND                          # invisible frames: no move is measured across them
    assert quality.measure(gap, "red")["jumps"] == 0


def test_flicker_warp_error_and_cuts():
    video, _ = one_object_clip(4, "green", frames=32)
    still = np.repeat(video[:1], 8, axis=0)
    assert quality.temporal_flickering(still) == 1.0
    assert quality.temporal_flickering(video) < 1.0
    shuffled = video[np.random.default_rng(0).permutation(len(video))]
    assert quality.warp_error(video) < quality.warp_error(shuffled)
    assert quality.scene_cuts(video) == []
    other = 255 - video                                   # a different scene: bright background
    assert quality.scene_cuts(np.concatenate([video, other])) == [32]


def test_command_line_reproduces_the_run_without_local_paths():
    argv = ["--frames", "64", "--comfyui", "/somewhere/ComfyUI", "--results=/tmp/r", "--prompts", "2", "--quick"]
    assert quality.command_line(argv) == "python benchmarks/quality.py --frames 64 --prompts 2 --quick"


def test_bad_arguments_name_the_value(capsys):
    for argv, expected in ((["--ksampler-seeds", "0"], "argument --ksampler-seeds: expected an integer >= 1, got 0"),
                           (["--prompts", "5"], "argument --prompts: expected an integer >= 1 and <= 4, got 5"),
                           (["--frames", "20"], "argument --frames: expected an integer >= 32, got 20")):
        with pytest.raises(SystemExit):
            quality.main(argv)
        assert expected in capsys.readouterr().err
