"""Network specifications, parameters and the algorithms every backend implements."""
