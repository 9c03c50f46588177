"""The Train tab's starting weights: choose, download from a real local HTTP server with progress,
cancel, retry; the choice is remembered per project; Help ▸ About shows the version."""
from __future__ import annotations

import dataclasses

import pytest
from file_server import FileServer

from echoquality_core import __version__
from echoquality_core.files.download import file_sha256
from echoquality_core.model.weights import FILE, NONE, cache_dir


def test_choose_download_cancel_retry(studio_window, qtbot, served_weights, weights_cache,
                                      screenshot):
    window = studio_window
    window.tabs.setCurrentWidget(window.train_panel)
    picker = window.train_panel.form.weights
    form = window.train_panel.form
    assert picker.spec() is None and picker.key() == NONE  # nothing cached: random start
    assert form.weights_warning.isVisibleTo(form)

    with FileServer(served_weights.parent, chunk_delay=0.02) as server:
        picker.registry["echoprime-quality"] = dataclasses.replace(
            picker.registry["echoprime-quality"], url=server.url(served_weights.name),
            sha256=file_sha256(served_weights), size=served_weights.stat().st_size)
        picker.choice.setCurrentIndex(picker.choice.findData("echoprime-quality"))
        assert picker.spec() == "echoprime-quality" and not picker.ready()
        assert "Not downloaded yet" in form.weights_warning.text()
        assert picker.download_button.isEnabled()
        with pytest.raises(ValueError, match="click Download"):
            form.values()

        seen = []
        picker.start_download()
        picker.worker.yielded.connect(seen.append)
        qtbot.waitUntil(lambda: len(seen) >= 1, timeout=10000)
        assert picker.cancel_button.isVisible() and not picker.choice.isEnabled()
        qtbot.waitUntil(lambda: "MB/s" in picker.status.text(), timeout=5000)
        assert " of 4 MB, " in picker.status.text()
        screenshot(window.train_panel, "train_tab_weights_downloading.png")
        picker.cancel_download()
        qtbot.waitUntil(lambda: picker.worker is None, timeout=10000)
        assert picker.status.text() == "Download cancelled."
        part = weights_cache / "video_quality_model.pt.part"
        assert 0 < part.stat().st_size < served_weights.stat().st_size
        assert not picker.ready() and picker.download_button.isEnabled()

        kept = part.stat().st_size
        server.chunk_delay = 0.0
        picker.download_button.click()  # retry: resumes the part
        qtbot.waitUntil(lambda: picker.worker is None, timeout=20000)
        assert server.requests[-1] == (served_weights.name, f"bytes={kept}-")
    assert "Downloaded and verified" in picker.status.text()
    assert file_sha256(weights_cache / "video_quality_model.pt") == file_sha256(served_weights)
    assert picker.ready() and picker.progress.value() == 1000
    assert not form.weights_warning.isVisibleTo(form)
    assert form.values()["model_weights"] == "echoprime-quality"
    assert picker.default_spec() == "echoprime-quality"  # the default once cached
    screenshot(window.train_panel, "train_tab_weights.png")


def test_random_weights_are_explained_and_echoprime_offered(studio_window, qtbot,
                                                          served_weights, weights_cache):
    """Issue 22.2: with nothing cached the default is random weights, said plainly, and one
    click downloads EchoPrime's quality model and starts from it; once cached it is the
    default."""
    form = studio_window.train_panel.form
    picker = form.weights
    studio_window.tabs.setCurrentWidget(studio_window.train_panel)
    assert picker.key() == NONE and picker.offer_button.isVisible()
    assert picker.offer_button.text() == "Get EchoPrime (125 MB)"
    assert picker.offer_button.width() >= picker.offer_button.sizeHint().width()  # not cut
    assert "no better than chance" in form.weights_warning.text()
    assert not picker.download_button.isVisible()  # nothing to download for random weights
    with FileServer(served_weights.parent) as server:
        picker.registry["echoprime-quality"] = dataclasses.replace(
            picker.registry["echoprime-quality"], url=server.url(served_weights.name),
            sha256=file_sha256(served_weights), size=served_weights.stat().st_size)
        picker.offer_button.click()
        assert picker.key() == "echoprime-quality" and picker.worker is not None
        assert not picker.offer_button.isVisible()
        qtbot.waitUntil(lambda: picker.worker is None, timeout=20000)
    assert picker.ready() and picker.default_spec() == "echoprime-quality"
    assert form.values()["model_weights"] == "echoprime-quality"
    picker.set_spec(None)
    assert picker.offer_button.isVisible() and picker.offer_button.text() == "Use EchoPrime's model"
    picker.offer_button.click()
    assert picker.key() == "echoprime-quality" and picker.worker is None and picker.ready()


def test_echoprime_is_the_default_once_cached(studio_window, open_project, project_copy,
                                             weights_cache):
    """Opening a project while nothing is cached shows random weights without remembering
    that as the project's choice: once EchoPrime's model is cached, it is the default."""
    picker = studio_window.train_panel.form.weights
    project = open_project(project_copy)
    assert picker.key() == NONE
    weights_cache.mkdir(parents=True)
    (weights_cache / "video_quality_model.pt").write_bytes(b"cached")
    studio_window.train_panel.controls._project_opened(project)  # reopened
    assert picker.key() == "echoprime-quality" and picker.ready()


def test_offline_download_says_where_to_put_the_file(studio_window, qtbot, weights_cache):
    import socket

    picker = studio_window.train_panel.form.weights
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    picker.registry["kinetics400"] = dataclasses.replace(
        picker.registry["kinetics400"], url=f"http://127.0.0.1:{port}/r2plus1d_18-91a641e6.pth")
    picker.set_spec("kinetics400")
    picker.start_download()
    qtbot.waitUntil(lambda: picker.worker is None, timeout=10000)
    assert picker.status.text() == "Download failed."
    text = studio_window.train_panel.form.weights_warning.text()
    assert "by hand" in text and str(cache_dir() / "r2plus1d_18-91a641e6.pth") in text
    assert not picker.ready()
    picker.set_spec("none")


def test_choice_is_remembered_per_project(studio_window, open_project, project_copy, tmp_path,
                                          weights_cache):
    panel = studio_window.train_panel
    picker = panel.form.weights
    project = open_project(project_copy)
    weights_file = tmp_path / "mine.pt"
    weights_file.write_bytes(b"")
    picker.file = str(weights_file)
    picker.choice.setCurrentIndex(picker.choice.findData(FILE))
    assert picker.spec() == str(weights_file)
    picker.set_spec(None)
    assert picker.key() == NONE
    picker.choice.setCurrentIndex(picker.choice.findData("kinetics400"))
    panel.controls._project_opened(project)  # reopening the project restores its choice
    assert picker.key() == "kinetics400"
    picker.choice.setCurrentIndex(picker.choice.findData(NONE))
    panel.controls._project_opened(project)
    assert picker.key() == NONE and picker.spec() is None


def test_about_box_shows_the_version(studio_window, qtbot, screenshot):
    from PySide6.QtWidgets import QMessageBox

    studio_window.about_action.trigger()
    box = studio_window.findChild(QMessageBox, "aboutBox")
    assert box is not None and box.isVisible()
    assert f"EchoQuality Studio {__version__}" in box.text()
    screenshot(box, "about_box.png")
    box.accept()
