"""Shared test fixtures, and the test markers.

The host plumbing (finding ComfyUI, importing it, loading the pack, the reference folders) is the pack's
host_bootstrap.py; this file only turns it into fixtures.

- The pack is importable as `fifo_infinity` whatever the clone's folder is called.
- `reference_dir` / `vi_reference_dir` / `i2v_reference_dir`: the official-code fixtures, from
  `FIFO_REFERENCE_DIR` / `VIDEO_INFINITY_REFERENCE_DIR` / `FIFO_I2V_REFERENCE_DIR` (defaults: `../shared/reference/...` next to the clone, then
  `/work/shared/reference/...`). A missing fixture folder fails the tests that need it.
- `host`: the real ComfyUI (`FIFO_COMFYUI_ROOT`, set by tools/run_tests.sh, or `COMFYUI_PATH`) imported
  in-process with the pack loaded through ComfyUI's own `load_custom_node`.
- `server`: a real ComfyUI `main.py` over HTTP (tools/server_harness.py; tools/ is on sys.path for the tests).
- Markers: every test gets exactly one of unit / host / server / browser / distributed (pytest.ini says what
  each means). A test file or test may set one explicitly (`pytestmark = pytest.mark.browser`); otherwise
  `pytest_collection_modifyitems` derives it from the fixtures the test uses (`MARKER_FIXTURES`).
"""

import json
import os
import sys

import pytest

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(PACK_DIR, "tools")
if TOOLS_DIR not in sys.path:
    sys.path.append(TOOLS_DIR)          # pack_bootstrap, server_harness (shared with tools/); appended: shadows nothing


from pack_bootstrap import ReferenceNotFound, bootstrap, find_reference  # noqa: E402  (tools/ is on sys.path now)

bootstrap.register_pack()


def _find_reference(env, leaf):
    try:
        return find_reference(leaf, env)
    except ReferenceNotFound as error:
        pytest.fail(str(error))


# ---------------------------------------------------------------------------------------------------
# Markers
# ---------------------------------------------------------------------------------------------------

MARKERS = ("unit", "host", "server", "browser", "distributed")
MARKER_FIXTURES = (("server", ("server", "model_folders")),     # a real main.py over HTTP (or its model folders)
                   ("host", ("host",)))                         # ComfyUI in-process (tiny_model, tiny_i2v, ... need it)
"""Derived markers, first match wins: a test whose fixtures (with the fixtures they need) include one of these
names gets that marker; a test with none of them is `unit`."""


def marker_of(item) -> str:
    """The one marker of `item`: its explicit one, else the one its fixtures imply. Raises pytest.UsageError when
    a test is given two."""
    explicit = sorted({mark.name for mark in item.iter_markers() if mark.name in MARKERS})
    if len(explicit) > 1:
        raise pytest.UsageError(f"{item.nodeid} has the markers {explicit}: give it exactly one of {MARKERS}")
    if explicit:
        return explicit[0]
    used = set(getattr(item, "fixturenames", ()))
    for marker, fixtures in MARKER_FIXTURES:
        if used.intersection(fixtures):
            return marker
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = marker_of(item)
        if not item.get_closest_marker(marker):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def reference_dir():
    return _find_reference("FIFO_REFERENCE_DIR", "vc2_tiny")


@pytest.fixture(scope="session")
def manifest(reference_dir):
    with open(os.path.join(reference_dir, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def vi_reference_dir():
    return _find_reference("VIDEO_INFINITY_REFERENCE_DIR", "video_infinity")


@pytest.fixture(scope="session")
def i2v_reference_dir():
    """The VideoCrafter1 image-to-video fixtures (`FIFO_I2V_REFERENCE_DIR`, default ../shared/reference/vc1_i2v_tiny)."""
    return _find_reference("FIFO_I2V_REFERENCE_DIR", "vc1_i2v_tiny")


@pytest.fixture(scope="session")
def i2v_manifest(i2v_reference_dir):
    with open(os.path.join(i2v_reference_dir, "i2v_manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def tiny_i2v(host, i2v_reference_dir, i2v_manifest):
    """(MODEL, CLIP, VAE, parts, image encoder) of the reference tiny VideoCrafter1 I2V model, fp32, loaded by
    our loader with the heads of its manifest (heads are not stored in the weights)."""
    import torch
    from fifo_infinity.videocrafter.image_encoder import build_image_encoder
    from fifo_infinity.videocrafter.loader import load_videocrafter
    vision, resampler = i2v_manifest["vision"], i2v_manifest["resampler"]
    # text heads are not stored in the weights; i2v_manifest.json may give them ("text_heads"), else the fixture
    # protocol's one head width for its tiny towers (the vision tower's "head_width"), which test_i2v's text
    # parity test checks against the fixture's own embeddings
    text_heads = i2v_manifest.get("text_heads") or i2v_manifest["text_width"] // i2v_manifest["vision"]["head_width"]
    model, clip, vae, parts = load_videocrafter(os.path.join(i2v_reference_dir, "tiny_vc1_i2v.safetensors"),
                                                text_heads=text_heads, dtype=torch.float32)
    encoder = build_image_encoder(parts, vision_heads=vision["width"] // vision["head_width"],
                                  resampler_heads=resampler["heads"], dtype=torch.float32)
    return model, clip, vae, parts, encoder


def fixture_manifest() -> dict:
    """The reference manifest, for plain helper functions (fixtures use `manifest`)."""
    with open(os.path.join(_find_reference("FIFO_REFERENCE_DIR", "vc2_tiny"), "manifest.json")) as f:
        return json.load(f)


def frame_size() -> tuple[int, int]:
    """(width, height) in pixels of the reference latent (manifest `latent_hw` x 8): a size the tiny model takes."""
    h, w = fixture_manifest()["latent_hw"]
    return 8 * w, 8 * h


def comfy_root():
    """The ComfyUI root (host_bootstrap.find_comfyui); fails the test with the reason when there is none."""
    try:
        return bootstrap.find_comfyui()
    except bootstrap.ComfyUINotFound as error:
        pytest.fail(f"{error}; run the suite with `make test`")


@pytest.fixture(scope="session")
def host():
    """ComfyUI's `nodes` module with its built-in extra nodes and this pack loaded by `load_custom_node`."""
    return bootstrap.load_host(comfy_root())


@pytest.fixture(scope="session")
def tiny_checkpoint(reference_dir):
    return os.path.join(reference_dir, "tiny_vc2.safetensors")


@pytest.fixture(scope="session")
def tiny_model(host, tiny_checkpoint, manifest):
    """(MODEL, CLIP, VAE, parts) of the reference tiny VideoCrafter2, fp32."""
    import torch
    from fifo_infinity.videocrafter.loader import load_videocrafter
    return load_videocrafter(tiny_checkpoint, text_heads=manifest["text_encoder"]["heads"], dtype=torch.float32)


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory, reference_dir):
    """Model folders for a server: the reference tiny model in `checkpoints` (and the I2V one if present)."""
    root = tmp_path_factory.mktemp("models")
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    os.symlink(os.path.join(reference_dir, "tiny_vc2.safetensors"), checkpoints / "tiny_vc2.safetensors")
    i2v = os.environ.get("FIFO_I2V_REFERENCE_DIR") or os.path.join(reference_dir, "..", "vc1_i2v_tiny")
    if os.path.isfile(os.path.join(i2v, "tiny_vc1_i2v.safetensors")):
        os.symlink(os.path.abspath(os.path.join(i2v, "tiny_vc1_i2v.safetensors")), checkpoints / "tiny_vc1_i2v.safetensors")
    return {"checkpoints": str(checkpoints), "videocrafter": str(root / "videocrafter")}


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_folders):
    """A real ComfyUI `main.py --cpu` server with the pack, shared by the server tests."""
    from server_harness import ComfyServer
    instance = ComfyServer(comfy_root(), str(tmp_path_factory.mktemp("server")), model_folders).start()
    yield instance
    instance.stop()


def load_api_workflow(name):
    with open(os.path.join(PACK_DIR, "example_workflows", "api", name)) as f:
        return json.load(f)


def run_headless(prompt: dict, work_dir, model_folders: dict, processes: int = 1) -> dict:
    """Run an API prompt with the pack's run.py (one process, or `processes` gloo ranks under torchrun) on the CPU
    with `model_folders`; returns rank 0's summary (run.py's --result-json). Fails the test if any rank failed."""
    import socket
    import subprocess
    work_dir = str(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    workflow, paths = os.path.join(work_dir, "workflow.json"), os.path.join(work_dir, "paths.yaml")
    with open(workflow, "w") as f:
        json.dump(prompt, f)
    with open(paths, "w") as f:
        f.write("pack_tests:\n" + "".join(f"  {k}: {v}\n" for k, v in model_folders.items()))
    result = os.path.join(work_dir, "result.json")
    runner = [os.path.join(PACK_DIR, "run.py"), "--workflow", workflow, "--comfyui", comfy_root(), "--output-dir",
              os.path.join(work_dir, "out"), "--extra-model-paths-config", paths, "--cpu", "--quiet",
              "--result-json", result]
    if processes > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc-per-node", str(processes),
                   "--master-addr", "127.0.0.1", "--master-port", str(port)] + runner
    else:
        command = [sys.executable] + runner
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(result) as f:
        summary = json.load(f)
    assert summary["success"], summary
    assert all(f.startswith(os.path.join(work_dir, "out")) for f in summary["files"])
    return summary
