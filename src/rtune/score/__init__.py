"""Teacher scoring: cross-encoder, LLM yes-token reranker or bi-encoder scores for training groups."""
