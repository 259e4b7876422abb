"""Data: LSP loading, datasets, transforms, splits, checks."""
