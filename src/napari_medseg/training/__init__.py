"""Fine-tuning from corrected label maps (``medseg finetune``, the Train dock): pairs,
patches on the model grid, the training loop with validation and early stopping, DDP
through torchrun, and publishing a better model with its card."""
