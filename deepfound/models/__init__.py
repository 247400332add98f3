"""Deep feedforward networks of section 17.3 as Flax NNX modules, used as pure parameter pytrees
(``nnx.split`` once; every training step is a pure function of the parameter ``State``)."""

from deepfound.models.networks import CNN, MLP, perceptron, split
