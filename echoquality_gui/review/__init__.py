"""The Review tab: metrics, charts, threshold and calibration, label issues, report export."""
