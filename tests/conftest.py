"""Shared fixtures. Qt runs offscreen (no display needed); GUI tests get their own settings
file so they never touch the user's QSettings."""
from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Downloaded starting weights: a private, empty cache (child processes inherit it).
os.environ["ECHOQUALITY_CACHE"] = tempfile.mkdtemp(prefix="echoquality-test-cache-")
atexit.register(shutil.rmtree, os.environ["ECHOQUALITY_CACHE"], ignore_errors=True)

from pacs_fixtures import orthanc, pacs_env, pacs_files, tiny_checkpoint  # noqa: E402,F401

ARTIFACTS = Path(__file__).parent / "artifacts"
RATER = "Test Rater"


def pytest_collection_modifyitems(items) -> None:
    """Every test that needs the session's real training run (``trained_run``, also through
    another fixture) is ``slow``: ``-m "not slow"`` gives a quick loop."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """A small demo project written once per test session (10 clips, 24 frames, 120x160, 6 unlabelled):
    treat it as read-only; copy it (``project_copy``) to change labels."""
    from echoquality_core.demo.project import write_demo_project

    root = tmp_path_factory.mktemp("demo_project")
    write_demo_project(root, n_clips=10, n_frames=24, height=120, width=160, unlabelled=0.6)
    return root


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """Factory: ``tiny_project(n_clips, n_frames, height, width, seed, unlabelled)`` writes a
    small demo project into a new temporary folder and returns its labels CSV."""
    from echoquality_core.demo.project import write_demo_project

    def make(n_clips: int = 10, n_frames: int = 6, height: int = 64, width: int = 80,
             seed: int = 0, unlabelled: float = 0.0) -> Path:
        root = tmp_path_factory.mktemp(f"tiny_project_{n_clips}x{n_frames}_s{seed}")
        return write_demo_project(root, n_clips=n_clips, n_frames=n_frames, height=height,
                                  width=width, seed=seed, unlabelled=unlabelled)

    return make


@pytest.fixture(scope="session")
def random_model():
    """Factory: ``random_model(seed)``, an untrained R(2+1)D-18 with one logit (``build_model``
    without weights) seeded with ``seed``, in eval mode."""

    def make(seed: int = 0):
        import warnings

        import torch

        from echoquality_core.model.network import build_model

        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # random initialisation, on purpose
            return build_model().eval()

    return make


@pytest.fixture
def weights_cache(tmp_path, monkeypatch) -> Path:
    """The starting weights' cache folder (``ECHOQUALITY_CACHE``), private to the test, not
    created."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ECHOQUALITY_CACHE", str(folder))
    return folder


@pytest.fixture
def served_weights(tmp_path) -> Path:
    """A 4 MB state dict in a folder to serve (``tmp_path/www``): a download of it takes several
    chunks."""
    import torch

    folder = tmp_path / "www"
    folder.mkdir()
    path = folder / "video_quality_model.pt"
    torch.manual_seed(1)
    torch.save({"w": torch.randn(1_000_000)}, path)
    return path


@pytest.fixture
def project_copy(demo_project, tmp_path) -> Path:
    """A private copy of the demo project."""
    return Path(shutil.copytree(demo_project, tmp_path / "project"))


@pytest.fixture
def one_torch_thread():
    """Torch on one thread during a test (training tests: no oversubscription of 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _gc_in_gui_thread(request):
    """GUI tests collect garbage as the app does: only in the GUI thread, on a timer."""
    if "qtbot" in request.fixturenames or "qapp" in request.fixturenames:
        request.getfixturevalue("qapp")
        from echoquality_gui.common.garbage import collect_in_gui_thread

        collect_in_gui_thread()
    yield


@pytest.fixture
def app_heap():
    """For tests that time the window's event loop: garbage collections scan only what the test
    makes, as in the app, which freezes its start-up objects (``garbage.freeze_start_up``).
    This process also holds what every earlier test left (1–3 million objects late in the
    suite): a full collection of those on the GUI timer stalled the loop 0.5–2 s."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def isolated_settings(tmp_path):
    """QSettings in a temporary INI file, with the rater name already set (no dialog)."""
    from PySide6.QtCore import QSettings

    from echoquality_gui.common import settings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(tmp_path / "settings"))
    settings.set_rater(RATER)
    yield settings
    settings.app_settings().clear()


@pytest.fixture
def studio_window(qtbot, qapp, isolated_settings):
    """The main window (dark theme applied), shown, closed and deleted after the test."""
    from echoquality_gui.app import configure_application
    from echoquality_gui.window.main_window import MainWindow

    configure_application(qapp)
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    yield window
    from PySide6.QtCore import QThread

    window.close()  # a thread still running when pytest-qt deletes the window aborts the
    # whole process ("QThread: Destroyed while thread is still running"): fail this test instead
    left = [t for t in window.findChildren(QThread) if t.isRunning() and not t.wait(60000)]
    assert not left, f"{len(left)} threads still ran 60 s after the window closed"


@pytest.fixture
def open_project(qtbot, studio_window):
    """Open a project in ``studio_window`` and wait for the header scan and the first clip."""

    def open_(root, csv_path=None):
        with qtbot.waitSignal(studio_window.session.scan_finished, timeout=20000):
            assert studio_window.open_project(root, csv_path)
        qtbot.waitUntil(lambda: studio_window.session.current is not None, timeout=5000)
        return studio_window.session.project

    return open_


@pytest.fixture
def screenshot():
    """Save a PNG of a widget into tests/artifacts/ (git-ignored) for a human to look at."""

    def save(widget, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        assert widget.grab().save(str(path)), f"could not save {path}"
        return path

    return save


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A real, tiny training run, done once per test session: a 16-clip demo project (8 frames,
    96x128), 2 epochs of 4-frame clips on the CPU, tracked in the project's MLflow store.
    Returns ``(project_root, TrainEnd)``; treat both as read-only (copy to change labels)."""
    from echoquality_core.demo.project import write_demo_project
    from echoquality_core.model.precision import precision
    from echoquality_core.train.trainer import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("trained_project")
    csv_path = write_demo_project(root, n_clips=16, n_frames=8, height=96, width=128, seed=3,
                                  unlabelled=0.1)
    config = TrainConfig(annotations_csv=str(csv_path), videos_dir=None, n_frames=4, stride=1,
                         batch_size=2, epochs=2, learning_rate=1e-3, device="cpu",
                         log_mlflow_model=False)
    # fp32 on every CPU: on a bf16 CPU the frozen trunk's features (and so the run's own test
    # scores) would be bf16, and tests that score the run's clips again (evaluate, report,
    # pyfunc) would compare across precisions; bf16 training has tests of its own
    with precision("fp32"):
        end = Trainer(config).run()
    assert end.error is None and end.best_checkpoint is not None, end
    return root, end
