"""maetune: which masked-autoencoder configuration is worth training."""

__version__ = "0.1.0"
