"""Hostile and careless input on a real ComfyUI server (`main.py --cpu` over HTTP): every probe gets a clear
error before any sampling (HTTP 400 naming the input, or a node error naming it), nothing lands outside the
output folder, and the server serves the next valid prompt. docs/architecture.md, "Inputs and errors";
nodes/inputs.py.
"""

import json
import os
import time

import pytest
import requests
import torch

from conftest import load_api_workflow
from test_checkpoints import WritesAFile
from test_fifo_host import fifo_prompt


def post_raw(server, prompt: dict) -> requests.Response:
    """POST /prompt with the body as Python's json writes it: NaN and Infinity bare, as a hand-written body."""
    body = json.dumps({"prompt": prompt, "client_id": "bad-input-probe"}, allow_nan=True)
    return requests.post(server.url + "/prompt", data=body, headers={"Content-Type": "application/json"}, timeout=30)


def refused(server, prompt, node, input_name, words):
    """The prompt is refused with HTTP 400, the error is on `input_name` of `node` and says `words`."""
    response = post_raw(server, prompt)
    assert response.status_code == 400, (input_name, response.text[:500])
    errors = response.json()["node_errors"][node]["errors"]
    mine = [error for error in errors if error.get("extra_info", {}).get("input_name") == input_name]
    assert mine, errors
    assert any(words in f"{error['message']} {error['details']}" for error in mine), mine
    return errors


def failed_fast(server, prompt, words, seconds=120):
    """The prompt is accepted, then its run stops with an error that says `words`."""
    started = time.time()
    entry = server.wait(server.queue(prompt), timeout=seconds)
    text = json.dumps(entry["status"])
    assert entry["status"]["status_str"] == "error", text[:500]
    assert words in text, text[:2000]
    return time.time() - started


def with_inputs(prompt, node, **inputs):
    prompt[node]["inputs"].update(inputs)
    return prompt


def test_declared_limits_hold_on_the_fifo_sampler(server):
    refused(server, fifo_prompt(frames=10 ** 9), "4", "frames", "bigger than max of 1000000")
    refused(server, fifo_prompt(frames=4, width=0), "4", "width", "width = 0 is outside its range")
    refused(server, fifo_prompt(frames=4, width=100), "4", "width", "multiple of 64")
    refused(server, fifo_prompt(frames=4, eta=5.0), "4", "eta", "eta = 5.0 is outside its range")


@pytest.mark.parametrize("value", [float("nan"), "NaN", float("inf"), "-inf"])
def test_non_finite_cfg_is_refused(server, value):
    refused(server, fifo_prompt(frames=4, cfg=value), "4", "cfg", "is not a finite number")


def test_declared_limits_hold_on_the_empty_video_latent(server):
    prompt = load_api_workflow("videocrafter2_clip.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    with_inputs(prompt, "4", width=0, frames=0)
    errors = refused(server, prompt, "4", "width", "width = 0 is outside its range")
    assert any(error.get("extra_info", {}).get("input_name") == "frames" for error in errors)


@pytest.mark.parametrize("inputs, input_name, words", [
    (dict(local_phase_t=5000), "local_phase_t", "bigger than max of 1000"),
    (dict(local_phase_local_bias=1e6), "local_phase_local_bias", "outside its range"),
    (dict(global_phase_global_bias=float("nan")), "global_phase_global_bias", "not a finite number"),
    (dict(attn_scale=50.0), "attn_scale", "attn_scale = 50.0 is outside its range")])
def test_declared_limits_hold_on_the_video_infinity_context(server, inputs, input_name, words):
    prompt = load_api_workflow("video_infinity_long_video.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    refused(server, with_inputs(prompt, "7", **inputs), "7", input_name, words)


@pytest.mark.parametrize("name, words", [("x\u0000y", "state_file: cannot write"),
                                         ("s" * 300, "state_file: cannot write"),
                                         ("../../..", "state_file = '../../..': nothing is left")])
def test_bad_state_file_names_fail_before_sampling(server, name, words):
    """The run stops when the node starts (no base clip, no FIFO iteration: seconds, not the minutes of 5000
    frames), naming state_file; nothing is written anywhere."""
    seconds = failed_fast(server, fifo_prompt(frames=5000, state_file=name), words)
    assert seconds < 60, seconds
    written = [f for _, _, files in os.walk(server.output_dir) for f in files if f.endswith(".tmp")]
    assert not written


def test_broken_checkpoints_say_what_the_file_is(server, model_folders, tmp_path):
    folder = model_folders["checkpoints"]
    marker = tmp_path / "payload_ran.txt"
    files = {"probe_empty.ckpt": b"", "probe_random.ckpt": bytes(range(7, 256)) * 64}
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": WritesAFile(str(marker))},
               os.path.join(folder, "probe_pickle.ckpt"))
    expectations = {"probe_empty.ckpt": "is empty (0 bytes)",
                    "probe_random.ckpt": "neither a PyTorch checkpoint",
                    "probe_pickle.ckpt": "holds Python objects that loading would have to execute"}
    for name, words in expectations.items():
        prompt = load_api_workflow("videocrafter2_clip.json")
        prompt["1"]["inputs"]["ckpt_name"] = name
        failed_fast(server, prompt, words)
    assert not marker.exists()


def test_prefixes_stay_inside_the_output_folder_and_the_server_goes_on(server, manifest):
    """'..' and absolute parts of a filename_prefix are dropped; after every probe above the server still
    runs a valid prompt, and no file appeared outside its output folder."""
    height, width = (8 * side for side in manifest["latent_hw"])
    for prefix in ("../../escape/x", "/tmp/escape_absolute/x"):
        prompt = {
            "1": {"class_type": "FIFOInfinityCheckpointLoader", "inputs": {"ckpt_name": "tiny_vc2.safetensors",
                                                                          "rescale_schedule": True}},
            "2": {"class_type": "FIFOInfinityEmptyVideoLatent", "inputs": {"width": width, "height": height,
                                                                          "frames": 2}},
            "3": {"class_type": "FIFOInfinitySaveVideoStreaming",
                  "inputs": {"samples": ["2", 0], "vae": ["1", 2], "filename_prefix": prefix,
                             "format": "mp4 (H.264)", "fps": 8.0, "quality": 80, "decode_chunk": 16}},
        }
        entry = server.wait(server.queue(prompt), timeout=300)
        assert entry["status"]["status_str"] == "success", entry["status"]
        [path] = server.output_files(entry, "3")
        assert os.path.commonpath([server.output_dir, os.path.realpath(path)]) == server.output_dir
    outside = [path for path in (os.path.join(server.output_dir, "..", "..", "escape"), "/tmp/escape_absolute")
               if os.path.exists(path)]
    assert not outside, outside


def test_queued_prompts_finish_in_order_and_repeated_runs_keep_memory_flat(server):
    """What held and must keep holding: 5 prompts queued at once all finish, in the order queued; 20 runs back to
    back leave the server's resident memory flat (growth from the 5th to the 20th run under 64 MiB)."""
    import psutil
    from test_server import tiny_clip_prompt

    def clip(seed):
        prompt = tiny_clip_prompt(frames=8, steps=2)
        prompt["5"]["inputs"]["seed"] = seed
        return prompt

    ids = [server.queue(clip(seed)) for seed in range(100, 105)]
    starts = []
    for prompt_id in ids:
        entry = server.wait(prompt_id, timeout=600)
        assert entry["status"]["status_str"] == "success", entry["status"]
        starts.append(next(data["timestamp"] for event, data in entry["status"]["messages"]
                           if event == "execution_start"))
    assert starts == sorted(starts)
    process = psutil.Process(server.process.pid)
    resident = []
    for seed in range(200, 220):
        entry = server.wait(server.queue(clip(seed)), timeout=600)
        assert entry["status"]["status_str"] == "success", entry["status"]
        resident.append(process.memory_info().rss)
    growth = (resident[-1] - resident[4]) / 2 ** 20
    print(f"\n[bad input] server RSS after runs 5 / 20: {resident[4] / 2 ** 20:.0f} / {resident[-1] / 2 ** 20:.0f} MiB")
    assert growth < 64, growth
