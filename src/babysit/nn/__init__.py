"""Network building blocks: activations, initialisation, models built from them."""
