"""How many of MetaSlot's 512 prototypes are in use during the first steps of a paper-shape run.

Trains the ``dinosaur_voc`` preset (DINOv2 ViT-S/14 at 224 → 16×16 tokens, 6 slots of width 256,
codebook 512, ring buffer 768, Adam 2e-4 on the 50k-step warm-up schedule) with a randomly
initialised backbone on synthetic shapes images at 256×256, so it runs offline on a CPU. Every
``--every`` steps it prints the codes in use and their perplexity among the slots in the ring buffer
(the last 768 kept slots, quantised with the current codebook), and at the end the codes chosen by
the kept slots of ``--eval-images`` held-out images at evaluation.

    OMP_NUM_THREADS=1 python examples/codebook_usage.py --steps 300 --batch-size 4

The paper's batch is 32; on a CPU one such step takes tens of seconds (the 3×2048 decoder MLP runs
on 32·6·256 slot-token pairs), so ``--batch-size`` trades fidelity for time. The ring buffer keeps the
paper's 768 rows whatever the batch size.
"""

from __future__ import annotations

import argparse
import json
import time

import attrs
import torch

from metaslot.data.loader import collate_images
from metaslot.data.shapes import ShapesSpec
from metaslot.ops.codebook import RingBuffer, filled_rows
from metaslot.ops.metrics import codebook_perplexity, codes_in_use
from metaslot.ops.quantize import quantize
from metaslot.train.presets import dinosaur_voc
from metaslot.train.schedules import warmup_cosine


def buffer_code_usage(aggregator: torch.nn.Module) -> tuple[int, float, int]:
    """(codes in use, perplexity, filled rows) of the ring buffer's slots under the current codebook."""
    state = aggregator.codebook_state
    buffer = RingBuffer(vectors=state.buffer_vectors, pointer=state.buffer_pointer, fill=state.buffer_fill)
    codes = quantize(state.buffer_vectors[None], state.codebook.detach()).codes[0]
    codes = torch.where(filled_rows(buffer), codes, torch.full_like(codes, -1))
    size = state.codebook.shape[0]
    return int(codes_in_use(codes, size)), float(codebook_perplexity(codes, size)), int(state.buffer_fill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--eval-images", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=str, default=None, help="also write the rows to this file")
    arguments = parser.parse_args()

    config = dinosaur_voc()
    model_spec = attrs.evolve(config.model, encoder=attrs.evolve(config.model.encoder, pretrained=False))
    torch.manual_seed(arguments.seed)
    pipeline = model_spec.build()
    aggregator = pipeline.aggregator
    parameters = [parameter for parameter in pipeline.parameters() if parameter.requires_grad]
    optimizer = config.optim.build(parameters)
    total = config.loop.steps
    warmup = int(total * config.schedule.warmup_fraction)

    data = ShapesSpec(resolution=256, max_objects=5, train_size=100_000, val_size=arguments.eval_images)
    train_set, val_set = data.build("train", True), data.build("val", False)
    rows = []
    pipeline.train()
    started = time.perf_counter()
    for step in range(arguments.steps):
        first = step * arguments.batch_size
        batch = collate_images([train_set[index] for index in range(first, first + arguments.batch_size)])
        learning_rate = warmup_cosine(
            step, peak=config.optim.learning_rate, total_steps=total, warmup_steps=warmup
        )
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        optimizer.zero_grad(set_to_none=True)
        output = pipeline(batch.image)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.optim.clip_norm)
        optimizer.step()
        pipeline.after_optimizer_step(output)
        if (step + 1) % arguments.every == 0 or step + 1 == arguments.steps:
            in_use, perplexity, fill = buffer_code_usage(aggregator)
            row = {
                "step": step + 1,
                "loss": float(output.loss.detach()),
                "codes_in_use": in_use,
                "perplexity": round(perplexity, 2),
                "buffer_fill": fill,
                "kmeans_done": bool(aggregator.codebook_state.kmeans_done),
                "seconds": round(time.perf_counter() - started, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    pipeline.eval()
    with torch.no_grad():
        batch = collate_images([val_set[index] for index in range(arguments.eval_images)])
        aggregated = pipeline.frontend(batch.image).aggregator
    size = aggregator.codebook_state.codebook.shape[0]
    kept_codes = torch.where(
        aggregated.keep, aggregated.codes, torch.full_like(aggregated.codes, -1)
    ).flatten()
    final = {
        "evaluation_images": arguments.eval_images,
        "evaluation_codes_in_use": int(codes_in_use(kept_codes, size)),
        "evaluation_kept_slots": int(aggregated.keep.sum()),
    }
    rows.append(final)
    print(json.dumps(final), flush=True)
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
