"""PyTorch parts of soundscape: models, training and prediction."""
