"""Training engine: optimiser, schedule, checkpoints, distributed set-up, evaluation, loop."""
