"""Starting weights: how fast `echoquality train` refuses bad weights, and download throughput.

1. Time from starting `python -m echoquality_core train --weights BAD` to its error (exit 2),
   for a missing file, a state dict of another architecture (MC3-18) and a non-tensor pickle.
2. Download throughput of ``echoquality_core.files.download`` from a local ``python -m http.server``
   vs ``curl`` on the same 150 MB file (target: at least 0.8x curl).

Run: .venv/bin/python benchmarks/bench_weights.py
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 150 * 1024 * 1024
REPEATS = 3


def _bad_files(folder: Path) -> dict[str, Path]:
    import torch
    from torchvision.models.video import mc3_18

    other = folder / "mc3_18.pt"
    torch.save(mc3_18().state_dict(), other)
    pickle_file = folder / "settings.pt"
    torch.save({"epochs": 20, "arch": "r2plus1d_18"}, pickle_file)
    return {"missing file": folder / "absent.pt", "other architecture": other,
            "non-tensor pickle": pickle_file}


def time_to_first_error(folder: Path) -> None:
    from echoquality_core.demo.project import write_demo_project

    csv_path = write_demo_project(folder / "project", n_clips=4, n_frames=4, height=64, width=80)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for case, path in _bad_files(folder).items():
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "echoquality_core", "train", "--csv",
                                   str(csv_path), "--weights", str(path)],
                                  capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            assert done.returncode == 2, done.stderr
        print(f"train --weights, {case:<20} error after {sorted(times)[len(times) // 2]:.2f} s "
              f"(median of {REPEATS}; exit 2, one line)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(folder: Path) -> None:
    from echoquality_core.files.download import download, file_sha256

    www = folder / "www"
    www.mkdir()
    source = www / "weights.bin"
    with open(source, "wb") as fh:
        for _ in range(SIZE // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    digest = file_sha256(source)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(www)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/weights.bin"
    try:
        for _ in range(50):  # wait for the server
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        ours, theirs = [], []
        for i in range(REPEATS):
            dest = folder / f"ours{i}.bin"
            start = time.perf_counter()
            download(url, dest, sha256=digest, size=SIZE)  # includes the SHA-256 check
            ours.append(time.perf_counter() - start)
            dest.unlink()
            start = time.perf_counter()
            subprocess.run(["curl", "-s", "-o", str(folder / "curl.bin"), url], check=True)
            theirs.append(time.perf_counter() - start)
            (folder / "curl.bin").unlink()
    finally:
        server.terminate()
        server.wait()
    mb = SIZE / 1e6
    best_ours, best_curl = min(ours), min(theirs)
    print(f"download {mb:.0f} MB from a local http.server: ours {mb / best_ours:.0f} MB/s "
          f"(with SHA-256 check), curl {mb / best_curl:.0f} MB/s -> "
          f"{best_curl / best_ours:.2f}x curl (best of {REPEATS})")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-weights-") as tmp:
        folder = Path(tmp)
        time_to_first_error(folder)
        if shutil.which("curl"):
            throughput(folder)
        else:
            print("curl not installed: throughput comparison skipped")


if __name__ == "__main__":
    main()
