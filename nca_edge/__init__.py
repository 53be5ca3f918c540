"""nca-edge: self-classifying MNIST neural cellular automata, from training to low-power hardware."""

__version__ = "0.1.0"
