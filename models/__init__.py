"""Model programs (NumPyro); each module is one scenario. See DESIGN: structure only."""
