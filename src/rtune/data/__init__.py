"""Records, one reader/writer per format, splits and validation."""
