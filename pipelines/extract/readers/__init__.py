"""Reader stages: files -> decoded batches (image, audio; gpu_decode: nvJPEG on the device)."""
