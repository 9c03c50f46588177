"""What a normal ``pip install .`` ships: the wheel holds every ``.py`` file of both packages and
the resources, and the commands run from a wheel installed into a folder of its own (not the
checkout): ``echoquality --help`` and ``echoquality pacs --help`` (a package listed by hand was
once missing from the wheel, and the PACS commands failed in a normal install)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # --no-build-isolation: the venv's setuptools builds it (no download); the checkout is copied
    # to a scratch folder first so that no build/ or egg-info lands in the source tree
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others",
                            "--exclude-standard"], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    src = build / "src"
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    (found,) = out.glob("echoquality_studio-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_the_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for top in ("echoquality_core", "echoquality_gui")
                for p in (ROOT / top).rglob("*.py")}
    assert sorted(expected - names) == []
    assert "echoquality_core/pacs/__init__.py" in names
    resources = {"echoquality_resources/" + p.relative_to(ROOT / "resources").as_posix()
                 for p in (ROOT / "resources").rglob("*")
                 if p.is_file() and p.suffix in (".py", ".qss", ".svg")}
    assert resources and sorted(resources - names) == []


@pytest.mark.slow
def test_the_commands_run_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=600)
    # the installed copy, not the checkout: run from elsewhere with only the target folder added
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import echoquality_core.pacs, echoquality_gui;"
                            "print(echoquality_core.pacs.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(target))
    script = target / "bin" / "echoquality"
    for args in (["--help"], ["pacs", "--help"], ["pacs", "import", "--help"]):
        done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: echoquality"), done.stdout
    assert "send-results" in subprocess.run(
        [sys.executable, str(script), "pacs", "--help"], cwd=tmp_path, env=env,
        capture_output=True, text=True).stdout
