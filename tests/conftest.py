"""Shared test fixtures.

- The pack is importable as `fifo_infinity` whatever the clone's folder is called.
- `reference_dir` / `vi_reference_dir` / `i2v_reference_dir`: the official-code fixtures, from
  `FIFO_REFERENCE_DIR` / `VIDEO_INFINITY_REFERENCE_DIR` / `FIFO_I2V_REFERENCE_DIR` (defaults: `../shared/reference/...` next to the clone, then
  `/work/shared/reference/...`). A missing fixture folder fails the tests that need it.
- `host`: the real ComfyUI (`FIFO_COMFYUI_ROOT`, set by tools/run_tests.sh, or `COMFYUI_PATH`) imported
  in-process with the pack loaded through ComfyUI's own `load_custom_node`.
"""

import asyncio
import importlib.util
import json
import os
import sys

import pytest

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _register_pack(name="fifo_infinity"):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(PACK_DIR, "__init__.py"),
                                                  submodule_search_locations=[PACK_DIR])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_register_pack()


def _find_reference(env, leaf):
    candidates = [os.environ.get(env)] if os.environ.get(env) else [
        os.path.join(PACK_DIR, "..", "shared", "reference", leaf),
        os.path.join("/work", "shared", "reference", leaf)]
    for path in candidates:
        if path and os.path.isdir(path):
            return os.path.abspath(path)
    pytest.fail(f"reference fixtures not found (tried {candidates}); set {env}")


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
    root = os.environ.get("FIFO_COMFYUI_ROOT") or os.environ.get("COMFYUI_PATH")
    if not root:
        pytest.fail("no ComfyUI host: run the suite with `make test` (or set COMFYUI_PATH)")
    return os.path.abspath(root)


@pytest.fixture(scope="session")
def host():
    """ComfyUI's `nodes` module with its built-in extra nodes and this pack loaded by `load_custom_node`."""
    root = comfy_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args
    args.cpu = True
    import utils.install_util  # noqa: F401  ComfyUI's top-level `utils` package, before nodes.py puts comfy/ (with utils.py) first on sys.path
    import nodes
    if "SamplerCustomAdvanced" not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_builtin_extra_nodes())      # comfy_extras: SamplerCustom, CFGGuider, ...
    if not any(name.startswith("FIFOInfinity") or name.startswith("VideoCrafter") for name in nodes.NODE_CLASS_MAPPINGS):
        assert asyncio.run(nodes.load_custom_node(PACK_DIR)), "ComfyUI failed to load the pack"
    return nodes


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
