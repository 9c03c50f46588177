"""PACS import throughput and watch-mode latency against a local Orthanc (Debian's orthanc +
orthanc-dicomweb, started here on a free 127.0.0.1 port, HTTP compression off).

    .venv/bin/python benchmarks/bench_pacs.py [--clips 16] [--workers 4] [--repeats 3]

Import: ``import_studies`` (QIDO-RS listing + WADO-RS per instance, parsed and written to the
project) against plain ``curl`` fetching the same WADO-RS instance URLs into files, one curl
process reusing its connection (sequential) and ``curl --parallel`` with the same number of
connections; clips/s and MB/s of DICOM files written, median of ``--repeats``.
Watch latency: seconds from the upload of a one-clip study to its SR being found by QIDO-RS,
with a 1 s poll interval and a randomly initialised model at EchoPrime's input (16x112x112).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from orthanc_server import PASSWORD, USER, OrthancServer, unavailable_reason  # noqa: E402

from echoquality_core.demo.project import synthetic_clip, write_dicom_clip  # noqa: E402
from echoquality_core.pacs import (  # noqa: E402
    Credentials,
    PacsConnection,
    import_studies,
    list_clips,
    search_studies,
)


def upload_clips(server: OrthancServer, folder: Path, n: int, tag: str) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        frames = synthetic_clip(rng, "good", n_frames=48, height=480, width=640)
        path = write_dicom_clip(folder / f"{tag}{i}.dcm", frames, patient_id=f"BENCH-{tag}{i}",
                                patient_name="BENCH^PATIENT", instance_number=i + 1)
        server.upload(path)
        paths.append(path)
    return paths


def bench_import(conn: PacsConnection, work: Path, workers: int, repeats: int) -> list[float]:
    studies = search_studies(conn, modality="US")
    times, sizes, n = [], [], 0
    for r in range(repeats):
        into = work / f"import{r}"
        result = import_studies(conn, studies, into, workers=workers)
        assert not result.failed, result.failed
        times.append(result.seconds)
        sizes.append(result.n_bytes)
        n = len(result.downloaded)
        shutil.rmtree(into)
    return [n, statistics.median(times), statistics.median(sizes)]


def bench_curl(conn: PacsConnection, work: Path, parallel: int, repeats: int) -> float:
    refs = [r for s in search_studies(conn, modality="US") for r in list_clips(conn, s.study_uid)]
    args = []
    for i, ref in enumerate(refs):
        url = (f"{conn.url}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/"
               f"{ref.sop_uid}")
        args += [url, "-o", str(work / "curl" / f"{i}.multipart")]
    accept = 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*'
    command = ["curl", "-sSf", "--no-progress-meter", "-u", f"{USER}:{PASSWORD}", "-H", accept, "--create-dirs"]
    if parallel > 1:
        command += ["--parallel", "--parallel-max", str(parallel)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command + args, check=True)
        times.append(time.perf_counter() - start)
        shutil.rmtree(work / "curl")
    return statistics.median(times)


def bench_watch(server: OrthancServer, conn: PacsConnection, work: Path, repeats: int) -> list:
    import pydicom
    import torch

    from echoquality_core.model.network import build_model, save_checkpoint
    from echoquality_core.pacs.watch import Scorer, Watcher

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = save_checkpoint(build_model().eval(), work / "model.pt", threshold=0.5)
    watcher = Watcher(conn, Scorer.load(model), work / "watch", since=None,
                      on_event=lambda _t: None)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, kwargs={"interval": 1.0, "stop": stop})
    watcher.poll()  # the clips already in the PACS: not part of the latency
    thread.start()
    latencies = []
    rng = np.random.default_rng(1)
    for r in range(repeats):
        uid = pydicom.uid.generate_uid()
        frames = synthetic_clip(rng, "good", n_frames=48, height=480, width=640)
        path = write_dicom_clip(work / f"watch{r}.dcm", frames, patient_id=f"W{r}",
                                study_uid=uid)
        start = time.perf_counter()
        server.upload(path)
        while not conn.client().search_for_instances(study_instance_uid=uid,
                                                     search_filters={"Modality": "SR"}):
            time.sleep(0.05)
        latencies.append(time.perf_counter() - start)
    stop.set()
    thread.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        work = Path(tmp)
        server = OrthancServer(work / "orthanc").start()
        try:
            upload_clips(server, work / "uploads", args.clips, "c")
            conn = PacsConnection(server.url, Credentials(USER, PASSWORD))
            for workers in sorted({1, args.workers}):
                n, seconds, size = bench_import(conn, work, workers, args.repeats)
                print(f"import_studies, {workers} worker(s): {n} clips, {size / 1e6:.1f} MB in "
                      f"{seconds:.2f} s = {n / seconds:.1f} clips/s, {size / 1e6 / seconds:.1f} MB/s")
                curl = bench_curl(conn, work, workers, args.repeats)
                print(f"curl WADO-RS, {workers} connection(s): {curl:.2f} s = {n / curl:.1f} "
                      f"clips/s -> import_studies at {curl / seconds:.2f}x curl")
            latencies = bench_watch(server, conn, work, args.repeats)
            print("watch latency, upload to SR in the PACS (1 s poll): "
                  + ", ".join(f"{s:.2f}" for s in latencies)
                  + f" s (median {statistics.median(latencies):.2f} s)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
