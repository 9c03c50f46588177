"""Fine-tuning: settings, the epoch loop, callbacks, the Trainer, DDP, cross-validation."""
