"""Video-Infinity over torch.distributed (gloo on the CPU), with ranks spawned by the tests
(torch.multiprocessing.spawn, file:// rendezvous):

- parity with the official plugins' fixture for every case on 1, 2 and 3 ranks (uneven splits included);
- the patched tiny UNet on 2 ranks equals the same model in one process;
- ranks that call the model differently get a clear error instead of a hang.
"""

import os

import pytest
import safetensors.torch
import torch

from conftest import comfy_root
from video_infinity_support import (load_reference, parity_worker, spawn, unet_forward, unet_inputs, unet_options,
                                    unet_worker)

pytestmark = pytest.mark.distributed

PARITY_TOLERANCE = 1e-5
PARITY_RANKS = 3


@pytest.fixture(scope="module")
def gloo_parity(vi_reference_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("vi_gloo_parity")
    spawn(parity_worker, PARITY_RANKS, str(out), comfy_root(), vi_reference_dir, str(out))
    return out


def test_parity_with_official_plugins_over_gloo(gloo_parity, vi_reference_dir):
    meta, tensors = load_reference(vi_reference_dir)
    checked = 0
    for case in meta["cases"]:
        for ranks in range(1, PARITY_RANKS + 1):
            if case["clips"] < ranks:
                continue
            path = os.path.join(gloo_parity, f"{case['name']}.R{ranks}.safetensors")
            assert os.path.exists(path), f"rank 0 wrote no result for {case['name']} on {ranks} rank(s)"
            result = safetensors.torch.load_file(path)
            attn_error = (result["attn_out"] - tensors[f"{case['name']}.attn_out"]).abs().max().item()
            conv_error = (result["conv_out"] - tensors[f"{case['name']}.conv_out"]).abs().max().item()
            print(f"{case['name']} [gloo, {ranks} rank(s)]: attn_out max abs error {attn_error:.3g}, "
                  f"conv_out {conv_error:.3g}")
            assert attn_error < PARITY_TOLERANCE and conv_error < PARITY_TOLERANCE, (case["name"], ranks)
            checked += 1
    multi = sum(1 for c in meta["cases"] if c["clips"] > 1)
    assert checked >= len(meta["cases"]) + multi      # every multi-clip case ran on several ranks


def test_mismatched_ranks_get_a_clear_error(gloo_parity):
    with open(os.path.join(gloo_parity, "mismatch.txt")) as f:
        message = f.read()
    assert "the ranks called the model differently" in message


def test_patched_unet_over_gloo_equals_one_process(tiny_model, tiny_checkpoint, manifest, tmp_path):
    from fifo_infinity.bridge.video_infinity import apply_video_infinity
    hw, dim = manifest["latent_hw"], manifest["unet"]["context_dim"]
    spawn(unet_worker, 2, str(tmp_path), comfy_root(), tiny_checkpoint, manifest["text_encoder"]["heads"], hw, dim,
          str(tmp_path))
    ranks = [safetensors.torch.load_file(os.path.join(tmp_path, f"unet.rank{r}.safetensors")) for r in range(2)]
    x, t, context = unet_inputs(tuple(hw), dim)
    for sync in (False, True):
        key = f"sync{int(sync)}"
        local = unet_forward(apply_video_infinity(tiny_model[0], unet_options(sync), ""), x, t, context)
        assert torch.equal(ranks[0][key], ranks[1][key])          # every rank ends with the same whole output
        error = (ranks[0][key] - local).abs().max().item()
        print(f"patched UNet, sync={sync}: gloo 2 ranks vs one process: max abs error {error:.3g}")
        assert error < PARITY_TOLERANCE
