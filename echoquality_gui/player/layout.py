"""The cine player's widgets: the image boxes (clip, model input), the frame controls, the
levels row, the importance strip and the heat-map row. ``PlayerLayout`` builds them on the
player (``CinePlayer`` in ``view.py``), which does the playing."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStackedWidget,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from echoquality_gui.common import theme
from echoquality_gui.common.resources import icon
from echoquality_gui.player.clock import SPEEDS

OVERLAY_OPACITY = 0.45


class CineViewBox(pg.ViewBox):
    """The image's box: Ctrl+wheel zooms, the plain wheel steps frames (``wheel_step``), a
    left-button drag pans."""

    wheel_step = Signal(int)

    def wheelEvent(self, ev, axis=None):  # noqa: N802 (pyqtgraph's name)
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if delta:
            self.wheel_step.emit(-1 if delta > 0 else 1)
        ev.accept()


def _image_view() -> tuple[pg.GraphicsView, pg.ViewBox, pg.ImageItem]:
    view = pg.GraphicsView()
    view.setBackground(theme.VIDEO_BACKGROUND)
    box = CineViewBox(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
    image = pg.ImageItem(axisOrder="row-major")
    box.addItem(image)
    view.setCentralItem(box)
    return view, box, image

class PlayerLayout(QWidget):
    """The player's widgets; the subclass provides the slots (play, step, levels, overlay)."""

    def _build(self) -> None:
        self._build_images()
        self.info = QLabel("")
        self.info.setObjectName("clipInfo")
        self.rate = QLabel("")
        self.rate.setObjectName("fpsInfo")
        header = QHBoxLayout()
        header.addWidget(self.info, 1)
        header.addWidget(self.rate)
        controls = self._build_controls()
        levels = self._build_levels()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(header)
        layout.addWidget(self.stack, 1)
        layout.addLayout(controls)
        layout.addLayout(levels)
        layout.addWidget(self._overlay_controls())

    def _build_images(self) -> None:
        """The clip view (with the GradCAM overlay), the model-input view beside it, and the
        message shown instead of both (``self.stack``)."""
        self.view, self.view_box, self.image = _image_view()
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setLookupTable(pg.colormap.get("inferno").getLookupTable(0, 1, 256))
        self.overlay_item.setZValue(10)
        self.overlay_item.setOpacity(OVERLAY_OPACITY)
        self.view_box.addItem(self.overlay_item)
        self.model_view, self.model_box, self.model_image = _image_view()
        self.model_view.setVisible(False)
        self.model_view.setToolTip("What the model sees: masked, cropped, 112 x 112")

        self.view_box.wheel_step.connect(self.step)
        self.message = QLabel(self.empty_text)
        self.message.setObjectName("playerMessage")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        images = QWidget()
        row = QHBoxLayout(images)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.view, 3)
        row.addWidget(self.model_view, 2)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(images)

    def _build_controls(self) -> QGridLayout:
        """Frame buttons, scrub bar, position, speed, loop; the importance strip below."""
        self.play_button = self._tool("play", "Play / pause (Space)", self.toggle_play)
        buttons = [
            self._tool("first", "First frame (Home)", self.first),
            self._tool("step_back", "Previous frame (←)", lambda: self.step(-1)),
            self.play_button,
            self._tool("step_forward", "Next frame (→)", lambda: self.step(1)),
            self._tool("last", "Last frame (End)", self.last),
        ]
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self._on_slider)
        self.position = QLabel("0 / 0")
        self.position.setObjectName("framePosition")
        self.position.setToolTip("Frame / frames · time from the first frame (at the clip's "
                                 "frame rate)")
        self.position.setMinimumWidth(self.fontMetrics().horizontalAdvance("888 / 888 · 8888 ms"))
        self.speed_box = QComboBox()
        self.speed_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.speed_box.addItems([f"{s:g}×" for s in SPEEDS])
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.loop_box = QCheckBox("Loop", checked=True)
        self.loop_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.loop_box.toggled.connect(self.set_loop)
        controls = QGridLayout()
        controls.setVerticalSpacing(0)
        for col, widget in enumerate([*buttons, self.slider, self.position, self.speed_box,
                                      self.loop_box]):
            controls.addWidget(widget, 0, col)
        controls.setColumnStretch(len(buttons), 1)
        controls.addWidget(self._importance_plot(), 1, len(buttons))
        return controls

    def _build_levels(self) -> QHBoxLayout:
        """Brightness, contrast, reset and the model-input toggle."""
        self.brightness = self._level_slider(-100, 100, "Brightness")
        self.contrast = self._level_slider(-100, 100, "Contrast")
        self.model_box_toggle = QCheckBox("Model input (M)")
        self.model_box_toggle.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.model_box_toggle.toggled.connect(self.set_model_input)
        levels = QHBoxLayout()
        levels.addWidget(QLabel("Brightness"))
        levels.addWidget(self.brightness, 1)
        levels.addWidget(QLabel("Contrast"))
        levels.addWidget(self.contrast, 1)
        levels.addWidget(self._text_button("Reset (R)", self.reset_levels))
        levels.addWidget(self.model_box_toggle)
        return levels

    def _importance_plot(self) -> pg.PlotWidget:
        """A strip under the scrub bar, x aligned with it (frame index), with a frame marker."""
        plot = pg.PlotWidget(enableMenu=False)
        plot.setBackground(None)
        plot.setFixedHeight(38)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        plot.getPlotItem().setContentsMargins(0, 0, 0, 0)
        plot.getPlotItem().layout.setContentsMargins(0, 0, 0, 0)
        inset = self.style().pixelMetric(QStyle.PixelMetric.PM_SliderLength) // 2
        plot.setContentsMargins(inset, 2, inset, 2)
        plot.setToolTip("How much each frame the model saw mattered to its score "
                        "(mean GradCAM activation)")
        self.importance_curve = plot.plot(pen=pg.mkPen(theme.ORANGE, width=2), symbol="o",
                                          symbolSize=5, symbolBrush=theme.ORANGE, symbolPen=None)
        self.importance_marker = pg.InfiniteLine(angle=90, pen=pg.mkPen(theme.BLUE, width=1))
        plot.addItem(self.importance_marker)
        plot.setVisible(False)
        self.importance_plot = plot
        return plot

    def _overlay_controls(self) -> QWidget:
        """Show/hide and opacity of the heat map; visible while an overlay is set."""
        self.overlay_box = QCheckBox("Heat map (G)", checked=True)
        self.overlay_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.overlay_box.toggled.connect(self.set_overlay_visible)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100,
                                      value=round(OVERLAY_OPACITY * 100))
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.setToolTip("Heat-map opacity")
        self.opacity_slider.valueChanged.connect(
            lambda v: self.overlay_item.setOpacity(v / 100.0))
        self.overlay_caption = QLabel("")
        self.overlay_caption.setObjectName("clipInfo")
        row_widget = QWidget()
        row = QHBoxLayout(row_widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.overlay_box)
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.overlay_caption, 3)
        row_widget.setVisible(False)
        self.overlay_row = row_widget
        return row_widget

    def _tool(self, name: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(name))
        button.setToolTip(tip)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(slot)
        return button

    def _text_button(self, text: str, slot) -> QToolButton:
        button = QToolButton(text=text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(slot)
        return button

    def _level_slider(self, lo: int, hi: int, tip: str) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal, minimum=lo, maximum=hi, value=0)
        slider.setToolTip(f"{tip} (R resets)")
        slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        slider.valueChanged.connect(self._apply_levels)
        return slider
