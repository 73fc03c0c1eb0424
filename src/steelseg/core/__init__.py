"""Pure numpy: run-length encoding, the metric, post-processing and its search, screening, the
networks' named outputs. Arrays in, arrays out: no files, no torch, no randomness."""
