"""MODEL, CLIP and VAE patchers carry what the host needs to copy them (v0.33 `cached_patcher_init`).

v0.33's MultiGPU CFG Split and Select * Device nodes build per-device copies with `deepclone_multigpu`, and
`clone(disable_dynamic=True)` (used by the hooks nodes) rebuilds a dynamic patcher as a plain one; both call
the loader's reload factory. Hosts without the attribute (v0.3.75) copy by other means: the tests skip there.
"""

import pytest
import torch


@pytest.fixture(scope="module")
def loaded(host, tiny_checkpoint, manifest):
    """A fresh load through the loader node's code path (the session's tiny_model is shared by other tests)."""
    from fifo_infinity.videocrafter.loader import load_videocrafter
    model, clip, vae, _ = load_videocrafter(tiny_checkpoint, text_heads=manifest["text_encoder"]["heads"],
                                            dtype=torch.float32)
    if not hasattr(model, "cached_patcher_init"):
        pytest.skip("this host's ModelPatcher has no cached_patcher_init (before v0.33)")
    return model, clip, vae


def same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("part", ["model", "clip", "vae"])
def test_deepclone_multigpu_gives_an_independent_copy(loaded, part):
    """`deepclone_multigpu` (what MultiGPU CFG Split does per extra device) builds a new module from the
    checkpoint: other tensors, the same weights, the host's own patcher class."""
    import comfy.model_patcher
    model, clip, vae = loaded
    patcher = {"model": model, "clip": clip.patcher, "vae": vae.patcher}[part]
    assert patcher.cached_patcher_init is not None
    copy = patcher.deepclone_multigpu()
    assert copy.model is not patcher.model
    assert isinstance(copy, comfy.model_patcher.ModelPatcher)
    assert same_weights(copy, patcher)
    assert copy.cached_patcher_init == patcher.cached_patcher_init     # copies can be copied again


def test_non_dynamic_clone_and_forced_deepcopy(loaded):
    """`clone(disable_dynamic=True)` is accepted; `clone(force_deepcopy=True)` rebuilds through the factory with
    `disable_dynamic=True` (a plain ModelPatcher) and keeps the clone's patches and options."""
    import comfy.model_patcher
    model = loaded[0].clone()
    model.model_options["transformer_options"]["fifo_infinity_marker"] = 1
    plain = model.clone(disable_dynamic=True)
    assert plain.model_options["transformer_options"]["fifo_infinity_marker"] == 1
    copy = model.clone(force_deepcopy=True)
    assert type(copy) is comfy.model_patcher.ModelPatcher and copy.model is not model.model
    assert copy.model_options["transformer_options"]["fifo_infinity_marker"] == 1
    assert same_weights(copy, model)


def test_multigpu_cfg_split_accepts_the_model(host, loaded):
    """Core's MultiGPU CFG Split node takes our MODEL (on this one-device machine it adds no copies)."""
    node = host.NODE_CLASS_MAPPINGS["MultiGPU_WorkUnits"]
    out = node.execute(loaded[0], 2)
    split = out.result[0] if hasattr(out, "result") else out[0]
    assert split.model is loaded[0].model
    assert split.cached_patcher_init == loaded[0].cached_patcher_init
