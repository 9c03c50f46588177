"""EchoQuality Studio's stylesheet (style.qss) and SVG icons (icons/), installed as the package
``echoquality_resources``; ``echoquality_gui.resources`` loads them."""
