from deepfound import optim  # noqa: F401
