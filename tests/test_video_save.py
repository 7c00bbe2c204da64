"""Save Video (streaming): real files, frame counts, sizes, prefix containment, unwritable folders."""

import os

import av
import pytest
import torch


@pytest.fixture
def output_dir(host, tmp_path):
    import folder_paths
    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    yield tmp_path
    folder_paths.set_output_directory(previous)


@pytest.fixture(scope="module")
def latent_hw(manifest):
    return tuple(manifest["latent_hw"])


def count_frames(path):
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height


@pytest.mark.parametrize("video_format", ["mp4 (H.264)", "webm (VP9)"])
def test_writes_every_frame_in_chunks(host, tiny_model, output_dir, latent_hw, video_format):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinitySaveVideoStreaming"]
    latent = {"samples": torch.randn(21, 4, *latent_hw, generator=torch.Generator().manual_seed(0))}
    out = node.execute(latent, tiny_model[2], "runs/clip", video_format, 8.0, 90, 4)
    assert out.result[0] is latent
    saved = out.ui.as_dict()["images"][0] if hasattr(out.ui, "as_dict") else out.ui["images"][0]
    path = os.path.join(output_dir, saved["subfolder"], saved["filename"])
    assert os.path.dirname(path) == str(output_dir / "runs")
    assert count_frames(path) == (21, 8 * latent_hw[1], 8 * latent_hw[0])


def test_prefix_cannot_escape_the_output_folder(host, tiny_model, output_dir, latent_hw):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinitySaveVideoStreaming"]
    latent = {"samples": torch.zeros(2, 4, *latent_hw)}
    for prefix in ("../../x", "/etc/x", "a/../../../x"):
        node.execute(latent, tiny_model[2], prefix, "mp4 (H.264)", 8.0, 80, 16)
    written = [os.path.join(root, f) for root, _, files in os.walk(output_dir) for f in files]
    assert written and all(os.path.commonpath([str(output_dir), p]) == str(output_dir) for p in written)
    assert not os.path.exists(output_dir.parent.parent / "x_00001_.mp4")


def test_unwritable_folder_gives_a_clear_error(host, tiny_model, output_dir, latent_hw):
    (output_dir / "blocked").write_text("a file where a folder should be")
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinitySaveVideoStreaming"]
    with pytest.raises(RuntimeError, match="filename_prefix: cannot write the video.*queue again"):
        node.execute({"samples": torch.zeros(2, 4, *latent_hw)}, tiny_model[2], "blocked/x", "mp4 (H.264)", 8.0, 80, 16)


def test_interrupted_decode_keeps_the_frames_written(host, tiny_model, output_dir, latent_hw):
    """A failure part-way (here the VAE raising on the third chunk) still leaves a playable file."""
    from fifo_infinity.bridge.video_writer import StreamingVideoWriter, to_uint8
    vae = tiny_model[2]
    path = str(output_dir / "partial.mp4")
    latents = torch.randn(12, 4, *latent_hw, generator=torch.Generator().manual_seed(1))
    width, height = 8 * latent_hw[1], 8 * latent_hw[0]
    with pytest.raises(KeyboardInterrupt):
        with StreamingVideoWriter(path, width, height, 8.0) as writer:
            for index, start in enumerate(range(0, 12, 4)):
                if index == 2:
                    raise KeyboardInterrupt
                writer.write(to_uint8(vae.decode(latents[start:start + 4])))
    assert count_frames(path) == (8, width, height)


def test_video_output_is_the_hosts_video_type(host, tiny_model, output_dir, latent_hw):
    """The VIDEO output is the host's video type over the written file: Get Video Components gives every frame
    at the decoded size and the node's fps (tests/test_server.py runs it on into core's SaveVideo)."""
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinitySaveVideoStreaming"]
    latent = {"samples": torch.randn(10, 4, *latent_hw, generator=torch.Generator().manual_seed(2))}
    video = node.execute(latent, tiny_model[2], "runs/video", "mp4 (H.264)", 12.0, 90, 4).result[1]
    assert video.get_dimensions() == (8 * latent_hw[1], 8 * latent_hw[0])
    images, _audio, fps = host.NODE_CLASS_MAPPINGS["GetVideoComponents"].execute(video).result[:3]   # v0.33 adds more
    assert tuple(images.shape) == (10, 8 * latent_hw[0], 8 * latent_hw[1], 3)
    assert float(fps) == pytest.approx(12.0)
