"""The Label tab: the clip list, its filter and the label panel."""
