"""Negative mining: BM25 and dense search, rank-range sampling, false-negative filters."""
