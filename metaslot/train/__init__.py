"""Training loop: device, AMP, DDP, optimiser, schedules, checkpoints, logging, progress."""
