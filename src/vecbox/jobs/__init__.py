"""End-to-end jobs that compose collections, encoders and evaluation (the CLI calls these)."""
