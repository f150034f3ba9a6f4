"""Generation providers: the provider contract, shared guards, PixelLab, and its fake."""
