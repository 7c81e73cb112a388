"""Training utilities: losses, optimizers and schedulers (registered by name)."""
