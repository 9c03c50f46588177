"""A real Orthanc PACS with its DICOMweb plugin for tests and benchmarks: started from a config
file on a free 127.0.0.1 port, a temporary storage folder, HTTP basic authentication, no DICOM
port, no remote access; stopped with ``stop()``. Debian: ``apt-get install orthanc
orthanc-dicomweb``."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

USER, PASSWORD = "echo-tester", "s3cret-pacs-pw"
PLUGIN_PATHS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                "/usr/lib/orthanc/libOrthancDicomWeb.so")


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()), None)


def dicomweb_plugin() -> str | None:
    found = [p for p in PLUGIN_PATHS if Path(p).exists()]
    if not found:
        try:
            listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True,
                                     text=True, check=False).stdout.split()
        except OSError:
            listing = []
        found = [p for p in listing if "DicomWeb" in p and ".so" in p]
    return found[0] if found else None


def unavailable_reason() -> str | None:
    """Why no Orthanc can be started here, or None."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OrthancServer:
    """``start()`` it, ``url`` is its DICOMweb root, ``upload(path)`` stores a file."""

    def __init__(self, folder: Path, *, compression: bool = False):
        self.folder = Path(folder)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/dicom-web"
        self.auth = (USER, PASSWORD)
        self.compression = compression
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> OrthancServer:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "EchoQualityTest", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "HttpPort": self.port,
            "DicomServerEnabled": False, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "HttpCompressionEnabled": self.compression, "HttpThreadsCount": 16,
            "Plugins": [dicomweb_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1, "SaveJobs": False,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the child
        self.process = subprocess.Popen([orthanc_binary(), str(path)], stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.process.returncode}); see "
                                   f"{self.folder / 'orthanc.log'}")
            try:
                if requests.get(f"{self.base}/system", auth=self.auth, timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def upload(self, path: Path) -> dict:
        """Store a DICOM file through Orthanc's REST API; Orthanc's answer."""
        answer = requests.post(f"{self.base}/instances", data=Path(path).read_bytes(),
                               auth=self.auth, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def statistics(self) -> dict:
        return requests.get(f"{self.base}/statistics", auth=self.auth, timeout=5).json()

    def clear(self) -> None:
        """Delete every patient (and so every study) in the server."""
        for patient in requests.get(f"{self.base}/patients", auth=self.auth, timeout=5).json():
            requests.delete(f"{self.base}/patients/{patient}", auth=self.auth,
                            timeout=10).raise_for_status()
