"""Rerankers: anything that scores (query, passage) pairs (cross-encoders, LLM yes-token rerankers, bi-encoders)."""
