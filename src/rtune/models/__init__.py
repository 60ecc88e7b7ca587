"""Model loading: local folders, hub ids, the packaged default."""
