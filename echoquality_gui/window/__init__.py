"""The main window: menus, commands, shortcuts, preferences, what it remembers."""
