"""The resume protocol (docs/fifo.md, "State files") through the real ComfyUI server with the bundled tiny
model: a 48-frame FIFO run writes its state every 4 frames; the server process is SIGKILLed once 20 frames are
in the state file; a new server resumes from the file; the resumed video equals an uninterrupted run bit for bit
(SaveLatent files)."""

import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import comfy_root, load_api_workflow
from fifo_infinity.samplers.fifo_state import FifoStateError, load_state
from server_harness import ComfyServer

FRAMES = 48
STATE_NAME = "resume_test/state"


def workflow(prefix, state_file="", resume=False):
    """The resumable example workflow, shorter (48 frames, f 8, n 2), its latent saved with SaveLatent."""
    prompt = load_api_workflow("fifo_resumable_long_video.json")
    prompt["4"]["inputs"].update(frames=FRAMES, video_length=8, num_partitions=2, state_file=state_file,
                                 state_every=4, resume=resume)
    prompt["5"]["inputs"]["filename_prefix"] = prefix
    prompt["6"] = {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": prefix}}
    return prompt


def saved_latent(server, entry):
    (path,) = server.output_files(entry, "6", "latents")
    return load_file(path)["latent_tensor"]


@pytest.fixture
def work(tmp_path, model_folders):
    servers = []

    def start():
        servers.append(ComfyServer(comfy_root(), str(tmp_path), model_folders).start())
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


def test_killed_server_run_resumes_to_the_uninterrupted_video(work):
    first = work()
    state_path = os.path.join(first.output_dir, STATE_NAME + ".safetensors")
    first.queue(workflow("resume_test/killed", STATE_NAME))
    frames_done, deadline = 0, time.time() + 600
    while frames_done < 20:
        assert first.process.poll() is None, first.tail()
        assert time.time() < deadline, f"no state with 20 frames after 600 s:\n{first.tail()}"
        if os.path.exists(state_path):
            frames_done = load_state(state_path).frames_done
        time.sleep(0.05)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    killed_at = load_state(state_path).frames_done
    assert 20 <= killed_at < FRAMES, "the server should have been killed part-way"

    second = work()
    resumed = second.wait(second.queue(workflow("resume_test/resumed", STATE_NAME, resume=True)))
    assert resumed["status"]["status_str"] == "success", second.tail()
    uninterrupted = second.wait(second.queue(workflow("resume_test/uninterrupted")))
    assert uninterrupted["status"]["status_str"] == "success", second.tail()
    expected = saved_latent(second, uninterrupted)
    assert expected.shape == (FRAMES, 4, 8, 8)
    assert torch.equal(saved_latent(second, resumed), expected)
    final = load_state(state_path)
    assert final.frames_done == FRAMES
    # the state file holds the frames in model space; the killed run's frames are the video's first frames
    assert torch.equal(final.frames[:killed_at] / 0.18215, expected[:killed_at])

    # resuming with other settings or a missing file is refused with the input named
    other = workflow("resume_test/bad", STATE_NAME, resume=True)
    other["4"]["inputs"]["num_partitions"] = 3
    entry = second.wait(second.queue(other))
    message = str(entry["status"]["messages"])
    assert entry["status"]["status_str"] == "error"
    assert "num_partitions = 2 but this run has num_partitions = 3" in message, message
    missing = second.wait(second.queue(workflow("resume_test/missing", "resume_test/none", resume=True)))
    assert "resume: no FIFO state file at" in str(missing["status"]["messages"])
    with pytest.raises(FifoStateError):
        load_state(os.path.join(second.output_dir, "resume_test/none.safetensors"))


def test_a_fresh_run_keeps_the_state_file_it_would_replace(host, tmp_path, monkeypatch):
    """Queueing a new run with resume off must not destroy a long run's state: the old file is kept as
    <name>.previous.safetensors; an unwritable folder is refused before sampling, naming state_file."""
    import folder_paths
    import torch
    from fifo_infinity.bridge.state_file import make_state_file
    from fifo_infinity.samplers.fifo_state import FifoState, save_state
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    state_file = make_state_file("../../runs/long", 16, False)
    assert state_file.path == str(tmp_path / "runs" / "long.safetensors")     # '..' cannot leave the output folder
    old = FifoState(iteration=9000, queue=torch.zeros(2, 4, 1, 1), frames=torch.ones(3, 4, 1, 1), noise_state=None)
    save_state(state_file.path, old)
    new = FifoState(iteration=1, queue=torch.zeros(2, 4, 1, 1), frames=torch.zeros(0, 4, 1, 1), noise_state=None)
    write = state_file.writer(final_iteration=9)
    write(new)
    write(new)
    assert load_state(str(tmp_path / "runs" / "long.previous.safetensors")).iteration == 9000
    assert load_state(state_file.path).iteration == 1
    with pytest.raises(ValueError, match="resume is on but state_file is empty"):
        make_state_file("", 16, True)
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.raises(ValueError, match="state_file: cannot write the FIFO state"):
        make_state_file("blocked/state", 16, False)


@pytest.mark.parametrize("name, words", [("x\u0000y", "NUL|null"), ("n" * 300, "too long"),
                                         ("../..", "nothing is left of the name"), ("/", "nothing is left")])
def test_state_file_names_the_file_system_refuses_are_refused_before_sampling(host, tmp_path, monkeypatch,
                                                                              name, words):
    """The exact file is created and removed once when the node runs: a NUL character, a 300-character name or
    nothing left after dropping '..' and absolute parts is an error naming state_file; nothing is left behind."""
    import folder_paths
    from fifo_infinity.bridge.state_file import make_state_file
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    with pytest.raises(ValueError, match=f"state_file.*({words})"):
        make_state_file(name, 16, False)
    assert not [f for _, _, files in os.walk(tmp_path) for f in files]


def test_a_failed_periodic_write_goes_on_and_a_failed_final_write_rescues_the_frames(host, tmp_path, monkeypatch):
    """Any error of a periodic write (not only OSError) is logged and sampling goes on; a failed final write fails
    the run naming state_file, with every frame saved under fifo_state_rescued/ in the output folder."""
    import folder_paths
    import torch
    from fifo_infinity.bridge import state_file as state_files
    from fifo_infinity.samplers.fifo_state import FifoState, save_state
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path))
    state_file = state_files.make_state_file("runs/failing", 16, False)
    target = state_file.path

    def failing_save(path, state):
        if path == target:
            raise RuntimeError("disk said no")          # e.g. a SafetensorError: not an OSError
        save_state(path, state)
    monkeypatch.setattr(state_files, "save_state", failing_save)
    write = state_file.writer(final_iteration=10)
    state = FifoState(iteration=5, queue=torch.zeros(2, 4, 1, 1), frames=torch.ones(3, 4, 1, 1), noise_state=None)
    write(state)                                         # periodic: logged, no exception
    final = FifoState(iteration=10, queue=torch.zeros(2, 4, 1, 1), frames=torch.ones(7, 4, 1, 1), noise_state=None)
    with pytest.raises(ValueError, match="state_file: the final state could not be written .*disk said no.*"
                                         "all 7 frames is saved instead") as error:
        write(final)
    rescued = [os.path.join(root, f) for root, _, files in os.walk(tmp_path / "fifo_state_rescued") for f in files]
    assert len(rescued) == 1 and rescued[0] in str(error.value)
    assert torch.equal(load_state(rescued[0]).frames, final.frames)
