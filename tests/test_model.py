"""GPT-1 network (gptpipe/model.py): size, layout, masking, initialisation, optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptpipe.model import GPT, ClassifierHead, GPTConfig, gather_at, padding_mask


def _micro(seed: int = 0, **overrides) -> GPT:
    cfg = GPTConfig.preset("micro", vocab_size=97, **overrides)
    return GPT(cfg, generator=torch.Generator().manual_seed(seed)).eval()


def _ids(B: int, T: int, vocab: int = 97, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def test_gpt1_has_the_papers_117m_parameters():
    with torch.device("meta"):  # shapes only: no memory, no random draws
        model = GPT(GPTConfig.preset("gpt1", vocab_size=40_478))
    assert model.num_params() == 116_534_784
    assert model.num_params(non_embedding=True) == 116_534_784 - (40_478 + 512) * 768
    # 6N over the matmul parameters (all but positions) + 12·L·d·T attention, T = 512
    assert model.flops_per_token() == 6 * (116_534_784 - 512 * 768) + 12 * 12 * 768 * 512
    assert GPTConfig.preset("gpt1").vocab_size == GPTConfig().vocab_size == 40_478 + 5


def test_presets_and_config_checks():
    from gptpipe.presets import PRESETS

    tiny, scale = GPTConfig.preset("tiny"), PRESETS["tiny"]  # the model of the `tiny` scale
    shape = (tiny.n_layer, tiny.d_model, tiny.n_head, tiny.d_ff, tiny.context, tiny.vocab_size)
    assert shape == (*(scale["model"][k] for k in ("n_layer", "d_model", "n_head", "d_ff")),
                     scale["shard"]["context"], scale["bpe"]["vocab_size"] + 5)
    micro = GPTConfig.preset("micro")
    assert (micro.n_layer, micro.d_model, micro.n_head, micro.context) == (2, 64, 2, 64)
    with pytest.raises(ValueError, match="unknown model preset"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match="unknown GPTConfig field"):
        GPTConfig.preset("micro", n_embd=64)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=100, n_head=3)
    with pytest.raises(ValueError, match="context"):
        _micro()(_ids(1, 65))


def test_no_final_layernorm_and_tied_head():
    model = _micro()
    assert [name for name, _ in model.named_children()] == ["wte", "wpe", "drop", "h"]
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    assert norms == [f"h.{i}.{ln}" for i in range(2) for ln in ("ln_1", "ln_2")]
    # The only (vocab, d) matrix is the token embedding, and the head reads it.
    assert [n for n, p in model.named_parameters() if p.shape[0] == 97] == ["wte.weight"]
    h = torch.randn(2, 3, 64)
    torch.testing.assert_close(model.lm_logits(h), h @ model.wte.weight.T)
    _, loss = model(_ids(2, 8), _ids(2, 8, seed=2))
    loss.backward()
    unused = torch.zeros(97, dtype=torch.bool)
    unused[_ids(2, 8).flatten()] = True  # rows looked up as inputs
    # Rows never used as inputs still get gradient: through the output head.
    assert model.wte.weight.grad[~unused].abs().sum(dim=1).gt(0).all()


def test_initialisation_statistics():
    model = GPT(GPTConfig.preset("tiny"), generator=torch.Generator().manual_seed(0))
    for name, p in model.named_parameters():
        if p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.001, name
            assert abs(p.mean().item()) < 0.001, name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        else:  # LayerNorm gains
            assert torch.all(p == 1), name
    head = ClassifierHead(256, 3, generator=torch.Generator().manual_seed(0))
    assert torch.all(head.proj.bias == 0) and 0.015 < head.proj.weight.std().item() < 0.025
    # The generator makes initialisation reproducible.
    again = GPT(GPTConfig.preset("tiny"), generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.h[3].mlp.c_fc.weight, model.h[3].mlp.c_fc.weight)


def _reference_block(block, x: torch.Tensor) -> torch.Tensor:
    """One GPT-1 block written out by hand: n = LN(x + attn(x)); h = LN(n + mlp(n))."""
    B, T, C = x.shape
    nh, hs = block.attn.n_head, C // block.attn.n_head
    qkv = x @ block.attn.c_attn.weight.T + block.attn.c_attn.bias
    q, k, v = (t.reshape(B, T, nh, hs).permute(0, 2, 1, 3) for t in qkv.split(C, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)
    scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    a = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
    a = a @ block.attn.c_proj.weight.T + block.attn.c_proj.bias

    def ln(y, mod):
        mu, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
        return (y - mu) / torch.sqrt(var + 1e-5) * mod.weight + mod.bias

    n = ln(x + a, block.ln_1)
    u = n @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
    g = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    m = g @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias
    return ln(n + m, block.ln_2)


def test_block_is_post_ln_as_written_by_hand():
    block = _micro().h[0]
    with torch.no_grad():  # non-trivial LayerNorm parameters, so their placement matters
        for ln in (block.ln_1, block.ln_2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 10, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(block(x), _reference_block(block, x), atol=1e-5, rtol=1e-5)


def test_causal_future_tokens_do_not_change_earlier_logits():
    model = _micro()
    idx = _ids(2, 20)
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 97
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :12], b[:, :12], atol=0, rtol=0)
    assert (a[:, 12:] - b[:, 12:]).abs().amax(dim=-1).gt(1e-4).all()


def test_padding_mask_hides_padding_at_real_positions():
    model = _micro()
    with torch.no_grad():  # no position signal: a left-padded row must equal the unpadded one
        model.wpe.weight.zero_()
    real = _ids(2, 9)
    pad = 3
    padded = torch.cat([torch.full((2, pad), 5), real], dim=1)  # left padding
    mask = torch.ones_like(padded, dtype=torch.bool)
    mask[:, :pad] = False
    with torch.no_grad():
        want = model(real)[0]
        got = model(padded, attn_mask=mask)[0]
        unmasked = model(padded)[0]
    torch.testing.assert_close(got[:, pad:], want, atol=1e-5, rtol=1e-5)
    assert (unmasked[:, pad:] - want).abs().max() > 1e-3  # the mask is what makes them equal
    assert torch.isfinite(got).all()  # padding queries attend to themselves, never to nothing


def test_right_padded_batch_matches_unpadded_rows_and_gradients_stay_finite():
    model = _micro()
    a, b = _ids(1, 12), _ids(1, 7, seed=4)
    batch = torch.cat([a, F.pad(b, (0, 5), value=96)])
    mask = torch.ones_like(batch, dtype=torch.bool)
    mask[1, 7:] = False
    with torch.no_grad():
        logits = model(batch, attn_mask=mask)[0]
        torch.testing.assert_close(logits[0], model(a)[0][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[1, :7], model(b)[0][0], atol=1e-5, rtol=1e-5)
    targets = batch.masked_fill(~mask, -100)
    _, loss = model.train()(batch, targets, attn_mask=mask)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_padding_mask_layout():
    m = padding_mask(torch.tensor([[0, 1, 1]]))
    assert m.shape == (1, 1, 3, 3)
    assert m[0, 0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_loss_ignores_minus_100_and_matches_cross_entropy():
    model = _micro()
    idx, targets = _ids(2, 10), _ids(2, 10, seed=5)
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    keep = targets != -100
    want = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, want)
    assert model(idx)[1] is None


def test_gather_at_and_classifier_head():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    got = gather_at(h, torch.tensor([3, 1]))
    assert torch.equal(got, torch.stack([h[0, 3], h[1, 1]]))
    head = ClassifierHead(3, 5).eval()
    assert head(got).shape == (2, 5)
    # similarity: both orders summed, then one linear layer
    torch.testing.assert_close(head(got + got), got.add(got) @ head.proj.weight.T + head.proj.bias)


def test_dropout_only_in_training():
    model = _micro()
    idx = _ids(2, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(idx)[0], model(idx)[0])
        model.train()
        assert not torch.equal(model(idx)[0], model(idx)[0])
