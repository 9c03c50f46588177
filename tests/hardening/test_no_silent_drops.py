"""Nothing is dropped silently: a clip this user may not read gets a "permission denied" row (in
``score`` and in the project the app opens), a broken labels CSV is refused naming the row, and
a read-only folder opens read-only with the labels kept elsewhere. Permissions are real: the
checks run as the unprivileged user ``nobody`` (root reads everything)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip
from echoquality_core.labels.store import LabelError, LabelStore

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534

AS_NOBODY = textwrap.dedent("""
    import json, sys, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    from echoquality_core.labels.store import LabelError
    from echoquality_core.model.network import build_model
    from echoquality_core.data.preprocess import PreprocessParams
    from echoquality_core.labels.project import Project
    from echoquality_core.scoring.score import score_clips
    root, labels = Path(sys.argv[1]), Path(sys.argv[2])
    project = Project(root)
    project.scan()
    result = {"read_only": project.read_only,
              "clips": {c.rel: c.error for c in project.clips}}
    try:
        project.set_label("ok.dcm", 1)
    except LabelError as exc:
        result["save_error"] = str(exc)
    elsewhere = Project(root, labels)
    elsewhere.set_label("ok.dcm", 1)
    result["elsewhere"] = {"read_only": elsewhere.read_only, "csv": labels.read_text()}
    table = score_clips(root, build_model(), params=PreprocessParams(n_frames=4, size=32))
    result["scores"] = {r.video_path: r.error for r in table.itertuples()}
    print(json.dumps(result))
""")


@pytest.fixture
def shared_tmp():
    """A folder the user nobody can enter (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    folder = Path(tempfile.mkdtemp(prefix="echoquality-hardening-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_unreadable_clip_gets_a_row_and_a_read_only_folder_opens_read_only(shared_tmp):
    root = shared_tmp / "readonly"
    root.mkdir()
    frames = synthetic_clip(np.random.default_rng(0), n_frames=4, height=64, width=80)
    write_dicom_clip(root / "ok.dcm", frames, compression="none")
    write_dicom_clip(root / "locked.dcm", frames, compression="none")
    (root / "ok.dcm").chmod(0o644)
    (root / "locked.dcm").chmod(0o600)  # root's, unreadable to nobody
    (root / "closed").mkdir()
    write_dicom_clip(root / "closed" / "inside.dcm", frames, compression="none")
    (root / "closed").chmod(0o700)  # a subfolder nobody may not even list
    root.chmod(0o555)  # nobody may read the folder but not write in it
    writable = shared_tmp / "mine"
    writable.mkdir()
    shutil.chown(writable, NOBODY, NOBODY)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HOME": str(writable)}
    done = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-c", AS_NOBODY, str(root), str(writable / "labels.csv")],
        capture_output=True, text=True, timeout=300, env=env, cwd=writable, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    denied = "permission denied: this user may not read the file"
    closed = "permission denied: this user may not open the folder"
    assert result["clips"] == {"closed": closed, "locked.dcm": denied, "ok.dcm": None}
    assert result["scores"] == {"closed": f"closed: {closed}",
                                "locked.dcm": f"locked.dcm: {denied}", "ok.dcm": ""}
    assert result["read_only"] is True
    assert result["save_error"].startswith("Read-only: labels cannot be saved to ")
    assert result["elsewhere"]["read_only"] is False
    assert result["elsewhere"]["csv"].splitlines()[1].startswith("ok.dcm,1")
    assert sorted(p.name for p in root.iterdir()) == ["closed", "locked.dcm", "ok.dcm"]


@pytest.mark.parametrize(("text", "problem"), [
    ('video_path,quality_score\na.dcm,1\n"b.dcm,0\nc.dcm,1\nd.dcm,0\n',
     'row 3: a quote (") opened on this row is never closed'),
    ('video_path,quality_score\na.dcm,1\n"b.dcm,0\nc.dcm,1\nd.dcm",0\ne.dcm,1\n',
     "row 3: video_path runs over several lines"),
    ("video_path,quality_score,notes\na.dcm,1\nb.dcm\nc.dcm,1,x\n",
     "row 3: 1 value but the header has 3 columns (no 'quality_score' value)"),
])
def test_a_broken_labels_csv_is_refused_naming_the_row(tmp_path, text, problem):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelError) as caught:
        LabelStore(path)
    assert str(caught.value).startswith(problem)
    assert path.read_text() == text  # nothing rewritten


def test_quoted_notes_over_several_lines_still_read(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('video_path,quality_score,notes\na.dcm,1,"two\nlines"\nc.dcm,0,\n')
    store = LabelStore(path)
    assert store.paths() == ["a.dcm", "c.dcm"] and store.get("a.dcm").notes == "two\nlines"
