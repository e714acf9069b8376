"""The TUI's screens: one view per tab, plus the help screen."""
