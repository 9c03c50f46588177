"""Labels: the labels CSV, its values, several raters and their agreement, the open project."""
