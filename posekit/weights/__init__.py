"""Weights of the models posekit ships (see the model card beside each .pt file)."""
