"""A Flower app training the harness's MNIST model with byzagg's robust strategy."""
