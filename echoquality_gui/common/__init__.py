"""What every tab shares: the session, settings, theme, resources, workers, small widgets."""
