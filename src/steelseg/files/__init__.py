"""Files on disk: images, annotations, datasets, folds, submissions, class scores, scoring,
synthetic data, overlays and the run directory. Imports the core, never torch."""
