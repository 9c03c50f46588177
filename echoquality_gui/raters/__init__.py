"""Several raters: the Rater menu, the Agreement and Adjudicate tabs."""
