"""The app's colours in one place (the dark theme of ``resources/style.qss``): plot backgrounds
and text, the series colours, and what good / poor / wrong / error look like."""
from __future__ import annotations

BACKGROUND = "#15181e"  # plot and text-box background
TEXT = "#d8dde6"
DIM = "#aab3c2"  # axis labels, legends
AXIS = "#3d4554"
GRID_DASH = "#4d5566"  # chance line of the ROC plot
VIDEO_BACKGROUND = "#000000"

BLUE = "#4fc3f7"  # training loss, ROC curve, markers
ORANGE = "#ffb74d"  # validation loss, importance curve, poor labels
GREEN = "#81c784"  # AUC, best epoch
PURPLE = "#ce93d8"  # accuracy
LIGHT = "#e0e0e0"  # learning rate
YELLOW = "#ffd54f"  # warnings
RED = "#ff8a80"  # errors

GOOD_LABEL = "#7bd88f"
POOR_LABEL = ORANGE
ERROR = RED
WRONG_ROW = "#4a2622"  # a clip the model gets wrong
RIGHT_ROW = "#1f3d2b"  # a clip the model gets right
DONE_ROW = "#7f8a9c"  # a disagreement already reviewed

SERIES = {"train": BLUE, "val": ORANGE, "auc": GREEN, "accuracy": PURPLE, "lr": LIGHT,
          "best": GREEN, "warn": YELLOW, "error": RED}
