"""AdaSlot's contract: the output record, hard keep with a straight-through gradient to the score
network, dropped slots owning no pixel under every decoder and mask mode, λ·mean(keep) in the loss,
deterministic evaluation with argmax, the step counter, and a few training steps that lower the loss."""

from __future__ import annotations

import attrs
import pytest
import torch

import metaslot
from metaslot.errors import ConfigError
from metaslot.models.aggregators import AdaSlot, AdaSlotSpec, MetaSlotSpec, adaslot_like
from metaslot.models.decoders import (
    AttentionColourDecoderSpec,
    BroadcastPixelDecoderSpec,
    MLPDecoderSpec,
)
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines import AutoencoderSpec, DinosaurSpec

MODES = ("mask_normalized", "logit", "mask")
ENCODER = CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(2, 1))  # 16×16 → 8×8 tokens, 8 wide


def tiny_spec(**overrides: object) -> AdaSlotSpec:
    fields = dict(num_slots=5, slot_dim=8, feature_dim=6, num_iterations=2)
    return AdaSlotSpec(**(fields | overrides))


def neutral_scores(module: AdaSlot) -> None:
    """Zero the score network's output layer: keep and drop equally likely, whatever the slot."""
    with torch.no_grad():
        module.score[-1].weight.zero_()
        module.score[-1].bias.zero_()


def test_output_record_and_hard_keep() -> None:
    torch.manual_seed(0)
    module = tiny_spec().build()
    output = module(torch.randn(3, 10, 6), generator=torch.Generator().manual_seed(1))
    assert output.slots.shape == (3, 5, 8) and output.attention.shape == (3, 5, 10)
    assert output.keep.dtype == torch.bool and output.keep.shape == (3, 5)
    assert set(output.keep_weight.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(output.keep, output.keep_weight > 0.5)
    assert torch.all(output.codes == -1)
    # λ·mean(keep): the released linear penalty with the spec's weight (0.1).
    sparsity = output.loss_terms["sparsity"].detach()
    assert float(sparsity) == pytest.approx(0.1 * float(output.keep_weight.detach().mean()))
    assert module.codebook_size is None and module.codebook_statistics() is None


def test_the_spec_and_public_names_agree() -> None:
    spec = metaslot.AdaSlotSpec(num_slots=3, slot_dim=8, feature_dim=6)
    torch.manual_seed(0)
    from_class = metaslot.AdaSlot(spec)
    torch.manual_seed(0)
    from_spec = spec.build()
    assert from_class.spec == from_spec.spec == spec
    for name, tensor in from_spec.state_dict().items():
        assert torch.equal(tensor, from_class.state_dict()[name]), name
    # The shared initialiser is the released one: no weight depends on the slot count.
    assert from_spec.spec.initializer == "shared"
    assert from_spec.initializer.mean.shape == (1, 1, 8)


def test_spec_refuses_bad_values_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="lower_bound"):
        tiny_spec(lower_bound=6)
    with pytest.raises(ConfigError, match="eval_keep"):
        tiny_spec(eval_keep="mean")
    with pytest.raises(ConfigError, match="decoder_mask"):
        tiny_spec(decoder_mask="none")
    with pytest.raises(ConfigError, match="temperature_start"):
        tiny_spec(temperature_start=0.0)


def test_adaslot_like_keeps_the_widths_and_takes_adaslot_defaults() -> None:
    metaslot_spec = MetaSlotSpec(num_slots=7, slot_dim=32, feature_dim=16, num_iterations=2)
    spec = adaslot_like(metaslot_spec, sparsity_weight=0.5)
    assert (spec.num_slots, spec.slot_dim, spec.feature_dim, spec.num_iterations) == (7, 32, 16, 2)
    assert spec.initializer == "shared" and spec.sparsity_weight == 0.5


def test_argmax_evaluation_is_deterministic_and_follows_the_scores() -> None:
    torch.manual_seed(0)
    module = tiny_spec(eval_keep="argmax", shared_samples_at_eval=False).build().eval()
    features = torch.randn(2, 10, 6)
    with torch.no_grad():
        first = module(features, generator=torch.Generator().manual_seed(1))
        second = module(features, generator=torch.Generator().manual_seed(2))
        expected = module.keep_logits(first.slots).argmax(dim=-1) == 1
    assert torch.equal(first.keep, second.keep) and torch.equal(first.slots, second.slots)
    assert torch.equal(first.keep, expected)


def test_sampled_evaluation_draws_from_the_generator() -> None:
    torch.manual_seed(0)
    module = tiny_spec(num_slots=8).build().eval()  # eval_keep='sample', as released
    neutral_scores(module)
    features = torch.randn(4, 10, 6)
    with torch.no_grad():
        draws = [module(features, generator=torch.Generator().manual_seed(seed)).keep for seed in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1])  # same seed, same decision
    assert not torch.equal(draws[0], draws[2])  # 32 fair coins: another seed differs


def test_lower_bound_holds_in_every_image() -> None:
    torch.manual_seed(0)
    module = tiny_spec(lower_bound=3).build()
    with torch.no_grad():
        module.score[-1].weight.zero_()
        module.score[-1].bias.copy_(torch.tensor([10.0, -10.0]))  # drop everything
        output = module(torch.randn(4, 10, 6))
    assert output.keep.sum(dim=1).tolist() == [3, 3, 3, 3]


def test_step_counter_drives_the_cosine_temperature() -> None:
    module = tiny_spec(temperature_schedule="cosine", temperature_steps=4).build()
    assert float(module.temperature()) == pytest.approx(1.0)
    output = module(torch.randn(1, 10, 6))
    for _ in range(2):
        module.update_codebook(output)
    assert int(module.step_counter) == 2 and float(module.temperature()) == pytest.approx(0.75)
    assert "step_counter" in module.state_dict()
    assert tiny_spec().build().temperature() == 1.0  # released: constant tau 1


def autoencoder(decoder: object, mode: str = "mask_normalized", **aggregator: object) -> torch.nn.Module:
    spec = AutoencoderSpec(
        encoder=ENCODER,
        aggregator=AdaSlotSpec(num_slots=5, slot_dim=8, feature_dim=8, decoder_mask=mode, **aggregator),
        decoder=decoder,
        image_size=16,
    )
    torch.manual_seed(0)
    return spec.build()


def dinosaur(mode: str = "mask_normalized") -> torch.nn.Module:
    spec = DinosaurSpec(
        encoder=ENCODER,
        projection=None,
        aggregator=AdaSlotSpec(num_slots=5, slot_dim=8, feature_dim=8, decoder_mask=mode),
        decoder=MLPDecoderSpec(hidden_channels=(16,)),
        image_size=16,
    )
    torch.manual_seed(0)
    return spec.build()


PIPELINES = {
    "attention-colour": lambda mode: autoencoder(AttentionColourDecoderSpec(), mode),
    "broadcast-pixel": lambda mode: autoencoder(
        BroadcastPixelDecoderSpec(hidden_channels=8, broadcast_size=4), mode
    ),
    "dinosaur-mlp": dinosaur,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decoder", sorted(PIPELINES))
def test_dropped_slots_own_no_pixel(decoder: str, mode: str) -> None:
    pipeline = PIPELINES[decoder](mode)
    neutral_scores(pipeline.aggregator)
    output = pipeline(torch.randn(4, 3, 16, 16), generator=torch.Generator().manual_seed(3))
    dropped = ~output.keep
    assert dropped.any() and output.keep.any(), "the seed should drop some slots and keep others"
    assert torch.all(output.masks[dropped] == 0)
    # Not even an argmax that ignores keep gives a dropped slot a pixel: kept slots' masks are positive.
    labels = output.masks.argmax(dim=1)
    for image in range(4):
        owners = set(labels[image].unique().tolist())
        assert owners <= set(torch.nonzero(output.keep[image]).flatten().tolist())


@pytest.mark.parametrize("decoder", sorted(PIPELINES))
def test_loss_is_reconstruction_plus_sparsity_and_the_gradient_reaches_the_score_network(
    decoder: str,
) -> None:
    pipeline = PIPELINES[decoder]("mask_normalized")
    output = pipeline(torch.randn(2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    keep_weight = output.aggregator.keep_weight.detach()
    assert set(output.terms) == {"reconstruction", "sparsity"}
    assert float(output.terms["sparsity"]) == pytest.approx(0.1 * float(keep_weight.mean()))
    assert float(output.loss.detach()) == pytest.approx(
        float(output.terms["reconstruction"]) + float(output.terms["sparsity"]), rel=1e-6
    )
    # The reconstruction alone reaches the score network through the straight-through keep.
    score = pipeline.aggregator.score
    (reconstruction_gradient,) = torch.autograd.grad(
        output.loss - output.aggregator.loss_terms["sparsity"], [score[-1].weight]
    )
    assert reconstruction_gradient.abs().sum() > 0


def test_a_few_steps_lower_the_loss() -> None:
    pipeline = autoencoder(AttentionColourDecoderSpec())
    pipeline.train()
    image = torch.rand(4, 3, 16, 16)
    optimizer = torch.optim.Adam(pipeline.parameters(), lr=3e-3)
    losses = []
    for step in range(12):
        optimizer.zero_grad()
        output = pipeline(image, generator=torch.Generator().manual_seed(step))
        output.loss.backward()
        optimizer.step()
        pipeline.after_optimizer_step(output)
        losses.append(float(output.terms["reconstruction"]))
    assert sum(losses[-3:]) < sum(losses[:3])
    assert int(pipeline.aggregator.step_counter) == 12


def test_pixel_sparsity_weight_converts_the_released_units() -> None:
    # 10 over 3·128² summed values, times (0.5 / 0.226)² for the ImageNet normalisation.
    expected = 10 / (3 * 128 * 128) * (0.5 / ((0.229 + 0.224 + 0.225) / 3)) ** 2
    assert metaslot.models.aggregators.pixel_sparsity_weight() == pytest.approx(expected)
    assert 9e-4 < expected < 1.1e-3


def test_a_fixed_k_slot_attention_checkpoint_fits_every_adaslot_weight_but_the_score() -> None:
    from metaslot.models.aggregators import SlotAttentionSpec

    fixed = SlotAttentionSpec(num_slots=4, slot_dim=8, feature_dim=6, initializer="shared").build()
    adaptive = attrs.evolve(tiny_spec(num_iterations=3), num_slots=9).build()
    missing, unexpected = adaptive.load_state_dict(fixed.state_dict(), strict=False)
    assert unexpected == []
    assert sorted(missing) == sorted(
        name for name in adaptive.state_dict() if name.startswith("score.") or name == "step_counter"
    )
