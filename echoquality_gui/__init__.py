"""EchoQuality Studio's desktop app (PySide6 + pyqtgraph); the logic lives in echoquality_core."""
