"""Mapper stages: decoded batches -> embeddings on the device (image, audio)."""
