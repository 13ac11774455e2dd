"""FT-DINOSAUR's forward written from the public loader's description (rw-ocrl/ftdinosaur-inference),
as plain tensor operations on a state dict in its layout: the independent side of the equality tests.

Nothing here imports metaslot. The layout: a timm-style DINOv2 ViT (``encoder.*``, LayerNorm eps 1e-6,
layer scale, position embedding resampled bicubic+antialias to the token grid, cls token dropped, no
final norm), a LayerNorm→Linear→ReLU→Linear feature transform, Slot Attention (eps 1e-8, one head,
GRU cell, residual LayerNorm→Linear→ReLU→Linear MLP) and the top-k MLP patch decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReferenceLayout:
    """The sizes that fix an FT-DINOSAUR state dict's shapes."""

    width: int  # ViT width (384 ViT-S, 768 ViT-B)
    depth: int
    heads: int
    position_grid: int  # side of the stored position embedding's grid (37 for 518/14)
    slot_dim: int
    decoder_hidden: tuple[int, ...]
    num_tokens: int  # tokens the decoder's position embedding covers
    patch: int = 14


def layout_shapes(layout: ReferenceLayout) -> dict[str, tuple[int, ...]]:
    """Every key of the publisher's state dict with its shape."""
    c, d = layout.width, layout.slot_dim
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.cls_token": (1, 1, c),
        "encoder.pos_embed": (1, 1 + layout.position_grid**2, c),
        "encoder.patch_embed.proj.weight": (c, 3, layout.patch, layout.patch),
        "encoder.patch_embed.proj.bias": (c,),
    }
    for block in range(layout.depth):
        prefix = f"encoder.blocks.{block}."
        shapes.update(
            {
                prefix + "norm1.weight": (c,),
                prefix + "norm1.bias": (c,),
                prefix + "attn.qkv.weight": (3 * c, c),
                prefix + "attn.qkv.bias": (3 * c,),
                prefix + "attn.proj.weight": (c, c),
                prefix + "attn.proj.bias": (c,),
                prefix + "ls1.gamma": (c,),
                prefix + "norm2.weight": (c,),
                prefix + "norm2.bias": (c,),
                prefix + "mlp.fc1.weight": (4 * c, c),
                prefix + "mlp.fc1.bias": (4 * c,),
                prefix + "mlp.fc2.weight": (c, 4 * c),
                prefix + "mlp.fc2.bias": (c,),
                prefix + "ls2.gamma": (c,),
            }
        )
    shapes.update(
        {
            "slot_init.slots_mu": (1, 1, d),
            "slot_init.slots_logsigma": (1, 1, d),
            "slot_attention.feature_transform.0.weight": (c,),
            "slot_attention.feature_transform.0.bias": (c,),
            "slot_attention.feature_transform.1.weight": (2 * c, c),
            "slot_attention.feature_transform.1.bias": (2 * c,),
            "slot_attention.feature_transform.3.weight": (d, 2 * c),
            "slot_attention.feature_transform.3.bias": (d,),
        }
    )
    grouping = "slot_attention.slot_attention."
    shapes.update(
        {
            grouping + "to_q.weight": (d, d),
            grouping + "to_k.weight": (d, d),
            grouping + "to_v.weight": (d, d),
            grouping + "gru.weight_ih": (3 * d, d),
            grouping + "gru.weight_hh": (3 * d, d),
            grouping + "gru.bias_ih": (3 * d,),
            grouping + "gru.bias_hh": (3 * d,),
            grouping + "norm_input.weight": (d,),
            grouping + "norm_input.bias": (d,),
            grouping + "norm_slots.weight": (d,),
            grouping + "norm_slots.bias": (d,),
            grouping + "ff_mlp.module.0.weight": (d,),
            grouping + "ff_mlp.module.0.bias": (d,),
            grouping + "ff_mlp.module.1.weight": (4 * d, d),
            grouping + "ff_mlp.module.1.bias": (4 * d,),
            grouping + "ff_mlp.module.3.weight": (d, 4 * d),
            grouping + "ff_mlp.module.3.bias": (d,),
            "decoder.pos_embed": (1, layout.num_tokens, d),
        }
    )
    width = d
    for index, hidden in enumerate((*layout.decoder_hidden, c + 1)):
        shapes[f"decoder.decoder.{2 * index}.weight"] = (hidden, width)
        shapes[f"decoder.decoder.{2 * index}.bias"] = (hidden,)
        width = hidden
    return shapes


def random_weights(layout: ReferenceLayout, seed: int) -> Weights:
    """A state dict of the layout with random values of a sensible scale (norms near 1, weights ~ 1/√fan-in)."""
    generator = torch.Generator().manual_seed(seed)
    weights: Weights = {}
    for key, shape in layout_shapes(layout).items():
        noise = torch.randn(shape, generator=generator)
        if len(shape) == 1 and key.endswith("weight"):
            weights[key] = 1.0 + 0.1 * noise  # LayerNorm scales
        elif key.endswith("gamma"):
            weights[key] = 0.5 + 0.1 * noise  # layer scale, large enough for the blocks to matter
        elif len(shape) >= 2 and "pos_embed" not in key and "cls_token" not in key and "slot_init" not in key:
            fan_in = math.prod(shape[1:])
            weights[key] = noise / math.sqrt(fan_in)
        else:
            weights[key] = 0.1 * noise
    return weights


def _layer_norm(x: torch.Tensor, weights: Weights, prefix: str, eps: float) -> torch.Tensor:
    return functional.layer_norm(x, x.shape[-1:], weights[prefix + "weight"], weights[prefix + "bias"], eps)


def _linear(x: torch.Tensor, weights: Weights, prefix: str) -> torch.Tensor:
    bias = weights.get(prefix + "bias")
    out = x @ weights[prefix + "weight"].T
    return out if bias is None else out + bias


def vit_tokens(image: torch.Tensor, weights: Weights, layout: ReferenceLayout) -> torch.Tensor:
    """Patch tokens of the ViT's last block (no final norm, cls token dropped)."""
    x = functional.conv2d(
        image,
        weights["encoder.patch_embed.proj.weight"],
        weights["encoder.patch_embed.proj.bias"],
        stride=layout.patch,
    )
    batch, channels, height, width = x.shape
    x = x.flatten(2).transpose(1, 2)  # b (h w) c
    position = weights["encoder.pos_embed"]
    prefix, grid = position[:, :1], position[:, 1:]
    side = layout.position_grid
    if (height, width) != (side, side):
        grid = grid.reshape(1, side, side, channels).permute(0, 3, 1, 2)
        grid = functional.interpolate(grid, size=(height, width), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, height * width, channels)
    x = torch.cat([weights["encoder.cls_token"].expand(batch, -1, -1), x], dim=1)
    x = x + torch.cat([prefix, grid], dim=1)
    head_dim = channels // layout.heads
    for block in range(layout.depth):
        p = f"encoder.blocks.{block}."
        h = _layer_norm(x, weights, p + "norm1.", 1e-6)
        qkv = _linear(h, weights, p + "attn.qkv.").reshape(batch, -1, 3, layout.heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        scores = (q * head_dim**-0.5) @ k.transpose(-2, -1)
        h = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, -1, channels)
        x = x + weights[p + "ls1.gamma"] * _linear(h, weights, p + "attn.proj.")
        h = _layer_norm(x, weights, p + "norm2.", 1e-6)
        h = _linear(functional.gelu(_linear(h, weights, p + "mlp.fc1.")), weights, p + "mlp.fc2.")
        x = x + weights[p + "ls2.gamma"] * h
    return x[:, 1:]


def _gru_cell(inputs: torch.Tensor, hidden: torch.Tensor, weights: Weights, p: str) -> torch.Tensor:
    gates_input = inputs @ weights[p + "weight_ih"].T + weights[p + "bias_ih"]
    gates_hidden = hidden @ weights[p + "weight_hh"].T + weights[p + "bias_hh"]
    reset_i, update_i, new_i = gates_input.chunk(3, dim=-1)
    reset_h, update_h, new_h = gates_hidden.chunk(3, dim=-1)
    reset = torch.sigmoid(reset_i + reset_h)
    update = torch.sigmoid(update_i + update_h)
    new = torch.tanh(new_i + reset * new_h)
    return (1 - update) * new + update * hidden


def slot_attention(
    features: torch.Tensor, initial: torch.Tensor, weights: Weights, iterations: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """(slots, last iteration's softmax-over-slots attention ``b k n``)."""
    g = "slot_attention.slot_attention."
    x = _layer_norm(features, weights, g + "norm_input.", 1e-5)
    keys, values = _linear(x, weights, g + "to_k."), _linear(x, weights, g + "to_v.")
    slots = initial
    attention = torch.empty(0)
    for _ in range(iterations):
        queries = _linear(_layer_norm(slots, weights, g + "norm_slots.", 1e-5), weights, g + "to_q.")
        dots = torch.einsum("bkd,bnd->bkn", queries * queries.shape[-1] ** -0.5, keys)
        attention = dots.softmax(dim=1)
        normalised = attention / (attention.sum(dim=-1, keepdim=True) + 1e-8)
        updates = torch.einsum("bkn,bnd->bkd", normalised, values)
        batch, num_slots, dim = slots.shape
        slots = _gru_cell(updates.reshape(-1, dim), slots.reshape(-1, dim), weights, g + "gru.")
        slots = slots.reshape(batch, num_slots, dim)
        h = _layer_norm(slots, weights, g + "ff_mlp.module.0.", 1e-5)
        slots = slots + _linear(
            torch.relu(_linear(h, weights, g + "ff_mlp.module.1.")), weights, g + "ff_mlp.module.3."
        )
    return slots, attention


def top_k_decode(
    slots: torch.Tensor, attention: torch.Tensor, weights: Weights, layout: ReferenceLayout, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction ``b n c``, masks ``b k n`` with zeros where a slot was not among a token's top k)."""
    batch, num_slots, dim = slots.shape
    broadcast = slots[:, :, None, :] + weights["decoder.pos_embed"][:, None]  # b k n d
    tokens = broadcast.shape[2]
    # Per (image, token): the top_k slots by attention, as the publisher flattens them.
    per_token = attention.detach().transpose(1, 2).flatten(0, 1)  # (b n) k
    chosen = torch.topk(per_token, k=top_k, dim=1, sorted=False).indices
    chosen = chosen.unflatten(0, (batch, tokens)).transpose(1, 2)  # b s n
    index = chosen[..., None].expand(-1, -1, -1, dim)
    x = torch.gather(broadcast, 1, index)
    layers = len(layout.decoder_hidden) + 1
    for layer in range(layers):
        x = _linear(x, weights, f"decoder.decoder.{2 * layer}.")
        if layer < layers - 1:
            x = torch.relu(x)
    features, logits = x[..., :-1], x[..., -1:]
    alpha = logits.softmax(dim=1)
    reconstruction = (features * alpha).sum(dim=1)
    masks = torch.zeros(batch, num_slots, tokens, dtype=alpha.dtype)
    masks.scatter_(1, chosen, alpha.squeeze(-1))
    return reconstruction, masks


@dataclass(frozen=True)
class ReferenceOutput:
    features: torch.Tensor
    slots: torch.Tensor
    attention: torch.Tensor
    reconstruction: torch.Tensor
    token_masks: torch.Tensor
    masks: torch.Tensor  # bilinear to the image size


def forward(
    image: torch.Tensor, initial: torch.Tensor, weights: Weights, layout: ReferenceLayout, top_k: int
) -> ReferenceOutput:
    """The whole model on ``image`` (already preprocessed) from the initial slots ``initial``."""
    features = vit_tokens(image, weights, layout)
    t = "slot_attention.feature_transform."
    h = _layer_norm(features, weights, t + "0.", 1e-5)
    projected = _linear(torch.relu(_linear(h, weights, t + "1.")), weights, t + "3.")
    slots, attention = slot_attention(projected, initial, weights)
    reconstruction, token_masks = top_k_decode(slots, attention, weights, layout, top_k)
    side = int(math.isqrt(token_masks.shape[-1]))
    grid = token_masks.reshape(*token_masks.shape[:2], side, side)
    masks = functional.interpolate(grid, size=image.shape[-2:], mode="bilinear")
    return ReferenceOutput(features, slots, attention, reconstruction, token_masks, masks)
