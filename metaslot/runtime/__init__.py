"""What training, evaluation and benchmarks share about the machine they run on.

``device``: device and precision choice, autocast. ``distributed``: this process's place in a torchrun
job and the collectives (sum, gather, broadcast, barrier), with one answer to "are we distributed?"
(`is_distributed`). Imports nothing from the layers above it; the models use its collectives for the
codebook upkeep under DDP.
"""
