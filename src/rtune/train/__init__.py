"""Training: bi-encoder contrastive fine-tuning (later: cross-encoder, distillation)."""
