"""Network building blocks: activations, initialisation, regularizers (dropout, L1, max-norm), models built from them."""
