"""`rtune run pipeline.yaml`: the declared recipe as one resumable, gated, measured run (see runner.run_pipeline)."""
