"""MoVie+MCAN against a port of MMF's movie_mcan, its parameter count, its masks; the triple BCE by hand.

The port below re-states facebookresearch/mmf (mmf/models/movie_mcan.py and the modules it builds:
embeddings.SAEmbedding / SGAEmbedding / CBNEmbedding / TwoBranchEmbedding, attention.SelfAttention /
SelfGuidedAttention / MovieMcanMultiHeadAttention, bottleneck.MovieBottleneck / SEModule / Modulation,
layers.AttnPool1d / BranchCombineLayer / TripleLinear) with MMF's module names, so its state dict has the
keys of an MMF checkpoint. Two sizes MMF hard-codes (bottleneck output 1024, modulation width 256) are
arguments so that the port can be built tiny; MMF's own values are the defaults.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from clipvil.families.vqa.movie_mcan import MovieMCAN, MovieMCANConfig, from_mmf_state_dict
from clipvil.nn.losses import triple_logit_bce, vqa_bce
from clipvil.types import GridFeatures

VOCAB, ANSWERS, GRID_DIM = 40, 11, 24


# ---------------------------------------------------------------- the port of MMF (mask True = padding)
class _MmfMHA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.h, self.d_k = heads, dim // heads
        self.linears = nn.ModuleList(nn.Linear(dim, dim) for _ in range(4))
        self.dropout = nn.Dropout(0.1)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b = q.size(0)
        q, k, v = (
            lin(x).view(b, -1, self.h, self.d_k).transpose(1, 2) for lin, x in zip(self.linears, (q, k, v))
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(mask[:, None, None, :], -1e9)
        x = self.dropout(scores.softmax(-1)) @ v
        return self.linears[-1](x.transpose(1, 2).reshape(b, -1, self.h * self.d_k))


def _mmf_fcn(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4 * dim, dim))


class _MmfSA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.multi_head_attn, self.fcn = _MmfMHA(dim, heads), _mmf_fcn(dim)
        self.drop_mha, self.ln_mha = nn.Dropout(0.1), nn.LayerNorm(dim)
        self.drop_fcn, self.ln_fcn = nn.Dropout(0.1), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_mha(x + self.drop_mha(self.multi_head_attn(x, x, x, x_mask)))
        return self.ln_fcn(x + self.drop_fcn(self.fcn(x)))


class _MmfSGA(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.multi_head_attn = nn.ModuleList(_MmfMHA(dim, heads) for _ in range(2))
        self.fcn = _mmf_fcn(dim)
        self.drop_mha = nn.ModuleList(nn.Dropout(0.1) for _ in range(2))
        self.ln_mha = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))  # the third is never used
        self.drop_fcn, self.ln_fcn = nn.Dropout(0.1), nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor | None, y_mask: torch.Tensor
    ) -> torch.Tensor:
        x = self.ln_mha[0](x + self.drop_mha[0](self.multi_head_attn[0](x, x, x, x_mask)))
        x = self.ln_mha[1](x + self.drop_mha[1](self.multi_head_attn[1](x, y, y, y_mask)))
        return self.ln_fcn(x + self.drop_fcn(self.fcn(x)))


class _MmfAttnPool1d(nn.Module):
    def __init__(self, dim: int, num_attn: int) -> None:
        super().__init__()
        self.linear = nn.Sequential(
            nn.Linear(dim, dim // 2), nn.ReLU(), nn.Dropout(0.1), nn.Linear(dim // 2, num_attn)
        )
        self.num_attn = num_attn

    def forward(self, query: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        score = self.linear(query).transpose(-2, -1)  # [b, num_attn, L]
        if mask is not None:
            score = score.masked_fill(mask.unsqueeze(1), -10000.0)
        return (score.softmax(-1) @ value).view(query.size(0), self.num_attn, -1)


class _MmfSAEmbedding(nn.Module):
    def __init__(self, hidden: int, embedding_dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=embedding_dim, hidden_size=hidden, num_layers=1, batch_first=True)
        self.self_attns = nn.ModuleList(_MmfSA(hidden, heads) for _ in range(layers))
        self.attn_pool = _MmfAttnPool1d(hidden, 2)  # num_feat 2 x num_attn_pool 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        for sa in self.self_attns:
            out = sa(out, mask)
        return out, self.attn_pool(out, out, mask).view(x.size(0), 2, -1)


class _MmfSGAEmbedding(nn.Module):
    def __init__(self, embedding_dim: int, hidden: int, heads: int, layers: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, hidden)
        self.self_guided_attns = nn.ModuleList(_MmfSGA(hidden, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_mask: None, y_mask: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = self.linear(x.view(b, c, -1).transpose(1, 2))  # b x (h*w) x hidden
        for sga in self.self_guided_attns:
            x = sga(x, y, x_mask, y_mask)
        return x


class _MmfSE(nn.Module):
    def __init__(self, dim: int, sqrate: int) -> None:
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(dim, dim // sqrate, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(dim // sqrate, dim, kernel_size=1, bias=False),
            nn.Sigmoid(),
        )
        self.attn = nn.Sequential(
            _ChannelPool(), nn.Conv2d(1, 1, kernel_size=7, padding=3, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.se(x)
        return x * self.attn(x)


class _ChannelPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


class _MmfModulation(nn.Module):
    def __init__(self, num_features: int, num_cond: int, compressed_width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_cond, num_features)
        self.conv = nn.Conv2d(num_features, compressed_width, kernel_size=1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.conv(x * self.linear(cond).unsqueeze(2).unsqueeze(3))


class _MmfMovieBottleneck(nn.Module):
    """compressed=True, use_se=True, stride 1, groups 1, FrozenBatchNorm2d (MMF's defaults here)."""

    def __init__(self, inplanes: int, planes: int, cond_planes: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(planes * 4)
        self.downsample = downsample
        self.inplanes, self.planes, self.cond_planes = inplanes, planes, cond_planes

    def init_layers(self, compressed_width: int) -> None:
        self.cond = _MmfModulation(self.inplanes, self.cond_planes, compressed_width)
        self.se = _MmfSE(self.planes * 4, 4)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        identity = x
        out = torch.relu(self.bn1(self.conv1(x) + self.cond(x, cond)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        shortcut = self.downsample(identity) if self.downsample is not None else identity
        return torch.relu(out + shortcut), cond


class _MmfCBNEmbedding(nn.Module):
    def __init__(
        self, embedding_dim: int, cond_dim: int, num_layers: int, out_dim: int = 1024, compressed: int = 256
    ) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.layer_norm = nn.LayerNorm(out_dim)
        cbns = []
        for _ in range(num_layers):
            down = nn.Conv2d(embedding_dim, out_dim, 1, bias=False) if embedding_dim != out_dim else None
            cbns.append(_MmfMovieBottleneck(embedding_dim, out_dim // 4, cond_dim, down))
            embedding_dim = out_dim
        self.cbns = nn.ModuleList(cbns)
        for cbn in self.cbns:
            cbn.init_layers(compressed)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        for cbn in self.cbns:
            x, _ = cbn(x, v)
        return self.layer_norm(F.adaptive_avg_pool2d(x, (1, 1)).squeeze(3).squeeze(2))


class _MmfTwoBranch(nn.Module):
    def __init__(
        self, embedding_dim: int, hidden: int, heads: int, layers: int, cbn_layers: int, out_dim: int
    ) -> None:
        super().__init__()
        self.sga = _MmfSGAEmbedding(embedding_dim, hidden, heads, layers)
        self.sga_pool = _MmfAttnPool1d(hidden, 1)
        self.cbn = _MmfCBNEmbedding(embedding_dim, hidden, cbn_layers, out_dim, out_dim // 4)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, x_mask: None, y_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_sga = self.sga(x, y, x_mask, y_mask)
        return self.sga_pool(x_sga, x_sga, x_mask).squeeze(1), self.cbn(x, v)


class _MmfBranchCombine(nn.Module):
    def __init__(self, img_dim: int, ques_dim: int) -> None:
        super().__init__()
        out = img_dim * 2
        self.linear_cga = nn.ModuleList(nn.Linear(img_dim, out) for _ in range(2))
        self.linear_cbn = nn.ModuleList(nn.Linear(img_dim, out) for _ in range(2))
        self.linear_ques = nn.ModuleList(nn.Linear(ques_dim, out) for _ in range(2))
        self.layer_norm = nn.ModuleList(nn.LayerNorm(out) for _ in range(3))

    def forward(self, v_cga: torch.Tensor, v_cbn: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        feat = [
            self.layer_norm[0](
                self.linear_ques[0](q) + self.linear_cbn[0](v_cbn) + self.linear_cga[0](v_cga)
            ),
            self.layer_norm[1](self.linear_cbn[1](v_cbn)),
            self.layer_norm[2](self.linear_ques[1](q) + self.linear_cga[1](v_cga)),
        ]
        return torch.stack(feat, dim=1) if self.training else feat[0]


class _MmfTripleLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(in_dim, out_dim) for _ in range(3))

    def forward(self, joint: torch.Tensor) -> torch.Tensor:
        if self.training:
            return torch.stack([self.linears[i](joint[:, i]) for i in range(3)], dim=1)
        return self.linears[0](joint)


class _Wrapper(nn.Module):  # MMF's TextEmbedding / ClassifierLayer keep the real module under `.module`
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.module(*args)


class MmfMovieMcan(nn.Module):
    """MMF's MoVieMcan.forward on pre-extracted CHW grid features (its identity image encoder)."""

    def __init__(self, cfg: MovieMCANConfig, grid_dim: int, vocab: int, answers: int) -> None:
        super().__init__()
        h = cfg.hidden
        self.word_embedding = nn.Embedding(vocab, cfg.word_dim)
        self.text_embeddings = _Wrapper(_MmfSAEmbedding(h, cfg.word_dim, cfg.heads, cfg.layers))
        self.image_feature_embeddings_list = _MmfTwoBranch(
            grid_dim, h, cfg.heads, cfg.layers, cfg.movie_layers, cfg.movie_dim
        )
        self.image_text_multi_modal_combine_layer = _MmfBranchCombine(h, h)
        self.classifier = _Wrapper(_MmfTripleLinear(2 * h, answers))

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """text [B, T] (0 = padding), image [B, C, h, w] → [B, A] in eval, [B, 3, A] in training."""
        text_mask = text.eq(0)
        total, vec = self.text_embeddings(self.word_embedding(text), text_mask)
        sga, cbn = self.image_feature_embeddings_list(image, total, vec[:, 0], None, text_mask)
        return self.classifier(self.image_text_multi_modal_combine_layer(sga, cbn, vec[:, 1]))


# ---------------------------------------------------------------- helpers
def _perturbed_port(cfg: MovieMCANConfig, grid_dim: int = GRID_DIM) -> MmfMovieMcan:
    """The port with random weights, LayerNorm / bias / frozen-BN values moved off their defaults."""
    torch.manual_seed(0)
    port = MmfMovieMcan(cfg, grid_dim, VOCAB, ANSWERS)
    with torch.no_grad():
        for p in port.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
        for m in port.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
                m.bias.add_(0.1 * torch.randn_like(m.bias))
                m.running_mean.add_(0.1 * torch.randn_like(m.running_mean))
                m.running_var.add_(0.2 * torch.rand_like(m.running_var))
    return port


def _ours_from(port: MmfMovieMcan, cfg: MovieMCANConfig, grid_dim: int = GRID_DIM) -> MovieMCAN:
    ours = MovieMCAN(cfg, grid_dim=grid_dim, vocab_size=VOCAB, n_answers=ANSWERS)
    ours.load_state_dict(from_mmf_state_dict(port.state_dict()), strict=True)
    return ours


def _padded_batch(dim: int = GRID_DIM) -> tuple[GridFeatures, torch.Tensor, list[tuple[int, int]]]:
    """3 images on a 4 x 5 grid: real regions 4x5, 3x4 and 2x5 (top-left), padding filled with noise;
    questions of 7, 4 and 1 tokens."""
    torch.manual_seed(1)
    sizes = [(4, 5), (3, 4), (2, 5)]
    fmap = 100 * torch.randn(3, dim, 4, 5)  # [B, C, h, w] huge values in the padding
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        fmap[i, :, :h, :w] = torch.randn(dim, h, w)
        mask[i, :h, :w] = True
    grid = GridFeatures(fmap.flatten(2).transpose(1, 2), mask.flatten(1), (4, 5))  # [B, 20, C]
    tokens = torch.randint(1, VOCAB, (3, 7))
    tokens[1, 4:] = 0
    tokens[2, 1:] = 0
    return grid, tokens, sizes


def _real_map(grid: GridFeatures, i: int, size: tuple[int, int]) -> torch.Tensor:
    """Image i's real region as MMF would receive it alone: [1, C, h_i, w_i]."""
    return grid.as_map()[i : i + 1, :, : size[0], : size[1]].contiguous()


TINY = MovieMCANConfig.preset("tiny")


# ---------------------------------------------------------------- equality with the port
def test_fused_head_equals_mmf_on_each_real_region() -> None:
    port = _perturbed_port(TINY).eval()
    ours = _ours_from(port, TINY).eval()
    grid, tokens, sizes = _padded_batch()
    with torch.no_grad():
        logits = ours(grid, tokens)  # [B, A]
        for i, size in enumerate(sizes):
            ref = port(tokens[i : i + 1], _real_map(grid, i, size))  # [1, A]
            torch.testing.assert_close(logits[i : i + 1], ref, atol=1e-5, rtol=1e-5)


def test_all_three_heads_equal_mmf_training_outputs() -> None:
    port = _perturbed_port(TINY)
    ours = _ours_from(port, TINY).eval()
    for m in port.modules():  # MMF's training-mode outputs, made deterministic
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    port.train()
    grid, tokens, sizes = _padded_batch()
    with torch.no_grad():
        heads = ours(grid, tokens, all_heads=True)  # [B, 3, A]
        assert heads.shape == (3, 3, ANSWERS)
        torch.testing.assert_close(heads[:, 0], ours(grid, tokens))
        for i, size in enumerate(sizes):
            torch.testing.assert_close(
                heads[i : i + 1], port(tokens[i : i + 1], _real_map(grid, i, size)), atol=1e-5, rtol=1e-5
            )


def test_mmf_unmasked_zero_padding_is_reproduced_by_marking_every_cell_real() -> None:
    dim = TINY.movie_dim  # grid width = bottleneck width: no downsample conv
    port = _perturbed_port(TINY, dim).eval()
    ours = _ours_from(port, TINY, dim).eval()
    assert ours.movie.cbns[0].downsample is None
    grid, tokens, _ = _padded_batch(dim)
    zeroed = grid.as_map().masked_fill(~grid.mask.view(3, 1, 4, 5), 0.0)  # [B, C, h, w] MMF's zero padding
    all_real = GridFeatures(zeroed.flatten(2).transpose(1, 2), torch.ones(3, 20, dtype=torch.bool), (4, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(all_real, tokens), port(tokens, zeroed), atol=1e-5, rtol=1e-5)


def test_mmf_state_dict_conversion_drops_the_unused_norm_and_rejects_strangers() -> None:
    state = _perturbed_port(TINY).state_dict()
    assert "image_feature_embeddings_list.sga.self_guided_attns.0.ln_mha.2.weight" in state
    converted = from_mmf_state_dict(state)
    assert not any("ln_mha.2" in k for k in converted)
    assert "movie.cbns.1.se.spatial.weight" in converted
    with pytest.raises(KeyError, match="no place for key 'model.word_embedding.weight'"):
        from_mmf_state_dict({"model.word_embedding.weight": torch.zeros(1)})


# ---------------------------------------------------------------- sizes
def _linear(i: int, o: int) -> int:
    return i * o + o


def _mmf_param_count(grid_dim: int, vocab: int, answers: int) -> int:
    """Parameters of MMF's movie_mcan at mmf/configs/models/movie_mcan/defaults.yaml, by hand."""
    h, words, layers, m, w = 1024, 300, 6, 1024, 256
    ln = 2 * h
    mha = 4 * _linear(h, h)
    ffn = _linear(h, 4 * h) + _linear(4 * h, h)

    def pool(glimpses: int) -> int:
        return _linear(h, h // 2) + _linear(h // 2, glimpses)

    text = vocab * words + 4 * h * (words + h) + 2 * 4 * h + layers * (mha + ffn + 2 * ln) + pool(2)
    sga = _linear(grid_dim, h) + layers * (2 * mha + ffn + 4 * ln) + pool(1)  # 4 LayerNorms, one unused

    def bottleneck(c: int) -> int:
        convs = c * w + 9 * w * w + w * m + (c * m if c != m else 0)
        modulation = _linear(h, c) + _linear(c, w)
        se = m * (m // 4) * 2 + 49
        return convs + modulation + se

    movie = bottleneck(grid_dim) + 3 * bottleneck(m) + 2 * m
    combine = 2 * _linear(h, 2 * h) + 2 * _linear(m, 2 * h) + 2 * _linear(h, 2 * h) + 3 * 2 * (2 * h)
    return text + sga + movie + combine + 3 * _linear(2 * h, answers)


@pytest.mark.parametrize("grid_dim", [2048, 1024])
def test_parameter_count_at_the_default_preset(grid_dim: int) -> None:
    cfg = MovieMCANConfig.preset("default")
    assert cfg == MovieMCANConfig()
    with torch.device("meta"):
        ours = MovieMCAN(cfg, grid_dim=grid_dim, vocab_size=5000, n_answers=3129)
        port = MmfMovieMcan(cfg, grid_dim, 5000, 3129)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_mmf = sum(p.numel() for p in port.parameters())
    assert n_mmf == _mmf_param_count(grid_dim, 5000, 3129)
    assert n_ours == n_mmf - 6 * 2 * 1024  # less MMF's six never-used SGA LayerNorms


def test_presets_and_bad_config() -> None:
    assert TINY.hidden == 32 and TINY.movie_dim == 32
    with pytest.raises(ValueError, match="unknown MoVie\\+MCAN preset 'huge'"):
        MovieMCANConfig.preset("huge")
    with pytest.raises(ValueError, match="hidden 100 is not divisible by heads 8"):
        MovieMCANConfig(hidden=100)


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize("fill", [1e30, float("inf"), float("nan")])
def test_padded_cells_and_tokens_change_nothing(fill: float) -> None:
    torch.manual_seed(2)
    model = MovieMCAN(TINY, grid_dim=GRID_DIM, vocab_size=VOCAB, n_answers=ANSWERS).eval()
    grid, tokens, _ = _padded_batch()
    ref = model(grid, tokens)  # [B, A]
    filled = GridFeatures(grid.feats.masked_fill(~grid.mask.unsqueeze(-1), fill), grid.mask, grid.hw)
    torch.testing.assert_close(model(filled, tokens), ref, atol=1e-5, rtol=1e-5)
    longer = torch.cat([tokens, torch.zeros(3, 5, dtype=torch.long)], dim=1)  # [B, 12]
    torch.testing.assert_close(model(grid, longer), ref, atol=1e-5, rtol=1e-5)
    # image 1 alone on its own 3 x 4 grid gives its row of the padded batch
    alone = _real_map(grid, 1, (3, 4))  # [1, C, 3, 4]
    one = GridFeatures(alone.flatten(2).transpose(1, 2), torch.ones(1, 12, dtype=torch.bool), (3, 4))
    torch.testing.assert_close(model(one, tokens[1:2, :4])[0], ref[1], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter_through_the_triple_loss() -> None:
    model = MovieMCAN(TINY, grid_dim=GRID_DIM, vocab_size=VOCAB, n_answers=ANSWERS).train()
    grid, tokens, _ = _padded_batch()
    triple_logit_bce(model(grid, tokens, all_heads=True), torch.rand(3, ANSWERS)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


# ---------------------------------------------------------------- losses
def _bce_by_hand(x: list[float], t: list[float]) -> float:
    return sum(
        -(ti * math.log(1 / (1 + math.exp(-xi))) + (1 - ti) * math.log(1 - 1 / (1 + math.exp(-xi))))
        for xi, ti in zip(x, t)
    ) / len(x)


def test_triple_logit_bce_by_hand() -> None:
    logits = torch.tensor(
        [
            [[0.5, -1.0, 2.0], [0.0, 1.5, -0.5], [-2.0, 0.3, 1.0]],
            [[1.0, 1.0, -1.0], [0.2, -0.2, 0.7], [3.0, -3.0, 0.0]],
        ]
    )  # [B=2, 3, A=3]
    target = torch.tensor([[1.0, 0.0, 0.3], [0.0, 0.6, 1.0]])  # [B, A]
    t = target.flatten().tolist()
    heads = [_bce_by_hand(logits[:, k].flatten().tolist(), t) for k in range(3)]
    expected = 3 * sum(heads)  # each head: mean over B*A pairs, times A = 3
    assert triple_logit_bce(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert vqa_bce(logits[:, 1], target).item() == pytest.approx(3 * heads[1], rel=1e-6)
    assert triple_logit_bce(logits[:, 0], target).item() == pytest.approx(3 * heads[0], rel=1e-6)
    assert vqa_bce(logits[:, 0].half(), target).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[B, 3, A\]"):
        triple_logit_bce(torch.zeros(2, 2, 3), target)
    with pytest.raises(ValueError, match="vqa_bce"):
        vqa_bce(torch.zeros(2, 4), target)
