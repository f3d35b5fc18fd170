"""Fidelity of the grid features: equal to open_clip's own at the native size; positions really used."""

from __future__ import annotations

import open_clip
import torch

from clipvil.encoders import build_encoder
from clipvil.encoders.posembed import resize_grid_embedding


def test_vit_tokens_equal_open_clip_at_native_size() -> None:
    enc = build_encoder("ViT-B-32")
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        grid = enc(x, pooled=True)
        enc.visual.output_tokens = True
        pooled_ref, tokens_ref = enc.visual(x)  # open_clip's own forward: (pooled, patch tokens after ln_post)
        enc.visual.output_tokens = False
    assert grid.hw == (7, 7)
    torch.testing.assert_close(grid.feats, tokens_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grid.pooled, pooled_ref, rtol=1e-5, atol=1e-5)


def test_vit_penultimate_block_equals_open_clip_intermediate() -> None:
    enc = build_encoder("ViT-B-32", block=-2)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        ours = enc(x).feats  # [1, 49, 768]
        ref = enc.visual.forward_intermediates(x, indices=[10], output_fmt="NLC", intermediates_only=True)
    torch.testing.assert_close(ours, ref["image_intermediates"][0], rtol=1e-5, atol=1e-5)


def test_positions_are_interpolated_to_the_real_grid_and_used_unlike_the_captioning_script_before_pr14() -> None:
    """Official bugs record: in CLIP-ViL's captioning extraction script before its fix (pull request #14), the
    resized position table was assigned to `.weight` while the forward pass used the untouched zero tensor — the ViT
    features had no positions, which is what degraded the paper's ViT rows. In its VQA extraction scripts as
    released, the ViT branch cannot run (it reads the attention pool that a ViT does not have) and the resize
    targets a square grid. Here: the table is resized to the real, non-square 18 x 31 grid, and used."""
    enc = build_encoder("ViT-B-32")
    table = enc.position_table((18, 31))  # [1 + 558, 768]
    assert table.shape == (1 + 18 * 31, 768)
    assert (table[1:].abs().sum(-1) > 0).all(), "every interpolated position must be non-zero"
    x = torch.randn(1, 3, 600, 1000)
    with torch.inference_mode():
        with_pos = enc(x).feats
        enc.visual.positional_embedding.data.zero_()
        without_pos = enc(x).feats
    assert (with_pos - without_pos).abs().max() > 1e-2, "positions must change the features"


def test_resize_is_bilinear_and_identity_at_native() -> None:
    rows = torch.arange(4.0).repeat_interleave(4)  # a ramp down the rows of a 4x4 grid
    pos = torch.cat([torch.full((1, 2), 7.0), torch.stack([rows, rows], -1)])  # [17, 2]
    assert resize_grid_embedding(pos, (4, 4), (4, 4)) is pos
    out = resize_grid_embedding(pos, (4, 4), (8, 6))  # non-square target
    assert out.shape == (1 + 48, 2) and out[0].tolist() == [7.0, 7.0]
    grid = out[1:, 0].reshape(8, 6)
    assert torch.allclose(grid[:, 0], grid[:, 5]), "a row ramp stays constant along each row"
    assert (grid[1:, 0] >= grid[:-1, 0]).all() and grid[0, 0] == 0.0 and grid[-1, 0] == 3.0


def test_resnet_grid_and_pool_equal_open_clip_at_native_size() -> None:
    enc = build_encoder("RN50")
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        grid = enc(x, pooled=True)
        ref = enc.visual.forward_intermediates(x, indices=[4])
    fmap = ref["image_intermediates"][0]  # [2, 2048, 7, 7]
    torch.testing.assert_close(grid.feats, fmap.flatten(2).transpose(1, 2))
    torch.testing.assert_close(grid.pooled, ref["image_features"], rtol=1e-4, atol=1e-5)


def test_resnet_padded_cells_are_masked() -> None:
    enc = build_encoder("RN50")
    x = torch.randn(1, 3, 64, 96)
    padded = torch.zeros(1, 3, 64, 160)
    padded[..., :96] = x
    with torch.inference_mode():
        g = enc(padded, content_hw=[(64, 96)], pooled=True)
    assert g.hw == (2, 5) and g.mask.view(2, 5)[:, :3].all() and not g.mask.view(2, 5)[:, 3:].any()


def test_vit_padding_is_masked_in_attention() -> None:
    """With padded patches hidden from attention, the real patches do not depend on the padding's values."""
    enc = build_encoder("ViT-B-32")
    x = torch.randn(1, 3, 64, 96)
    a, b = torch.zeros(1, 3, 64, 160), torch.randn(1, 3, 64, 160) * 5
    a[..., :96] = x
    b[..., :96] = x
    with torch.inference_mode():
        ga, gb = enc(a, content_hw=[(64, 96)]), enc(b, content_hw=[(64, 96)])
    keep = ga.mask[0]
    torch.testing.assert_close(ga.feats[0, keep], gb.feats[0, keep], rtol=1e-4, atol=1e-4)


def test_weights_are_fp32() -> None:
    """Guards the official code's default of loading CLIP in fp16."""
    enc = build_encoder("ViT-B-32")
    assert {p.dtype for p in enc.parameters()} == {torch.float32}
    assert open_clip.get_model_config("ViT-B-32") is not None
