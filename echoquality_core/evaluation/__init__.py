"""How good is a model: metrics with CIs, calibration, threshold, review set, report, plots."""
