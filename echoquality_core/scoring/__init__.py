"""Scoring clips with a model: score CSVs, GradCAM and heat maps, pyfunc, sharded scoring."""
