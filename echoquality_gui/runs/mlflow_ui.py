"""The MLflow web UI as a supervised child process: ``mlflow ui`` on a free local port,
``ready`` once it answers HTTP, its output shown when it fails, stopped with the window."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import (
    QElapsedTimer,
    QObject,
    QProcess,
    QProcessEnvironment,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtNetwork import QNetworkAccessManager, QNetworkProxy, QNetworkReply, QNetworkRequest

from echoquality_core.runs.tracking import MLFLOW_UI_ENV, free_port, mlflow_ui_command


class MlflowUiServer(QObject):
    """``mlflow ui`` on a free local port as a child process; ``ready`` once it answers HTTP."""

    ready = Signal(str)  # url
    failed = Signal(str)  # message with the process output
    stopped = Signal()

    POLL_MS = 500
    START_TIMEOUT_MS = 180_000
    OUTPUT_CHARS = 4000

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.tracking_uri: str | None = None
        self.url: str | None = None
        self.answering = False
        self.output = ""
        self._net = QNetworkAccessManager(self)
        self._net.setProxy(QNetworkProxy(QNetworkProxy.ProxyType.NoProxy))
        self._reply: QNetworkReply | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(self.POLL_MS)
        self._poll.timeout.connect(self._ask)
        self._clock = QElapsedTimer()

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self, tracking_uri: str, workdir: Path) -> None:
        """Start the UI on ``tracking_uri`` (or reuse the one already serving it)."""
        if self.process is not None and self.tracking_uri == tracking_uri:
            if self.answering:
                self.ready.emit(self.url)
            return
        self.stop()
        port = free_port()
        self.tracking_uri, self.url = tracking_uri, f"http://127.0.0.1:{port}/"
        self.answering, self.output = False, ""
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        for key, value in MLFLOW_UI_ENV.items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.setWorkingDirectory(str(workdir))
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read_output)
        process.errorOccurred.connect(self._on_error)
        process.finished.connect(self._on_finished)
        argv = mlflow_ui_command(tracking_uri, port)
        self.process = process
        process.start(argv[0], argv[1:])
        self._clock.start()
        self._poll.start()

    def stop(self, wait_ms: int = 5000) -> None:
        """Stop the server (SIGTERM lets MLflow stop its web worker too; killed if it hangs)."""
        self._poll.stop()
        if self._reply is not None:
            self._reply.abort()
        process, self.process = self.process, None
        self.answering = False
        if process is None:
            return
        for signal in (process.readyReadStandardOutput, process.errorOccurred, process.finished):
            signal.disconnect()
        if process.state() != QProcess.ProcessState.NotRunning:
            process.terminate()
            if not process.waitForFinished(wait_ms):
                process.kill()
                process.waitForFinished(wait_ms)
        process.deleteLater()
        self.stopped.emit()

    def _read_output(self) -> None:
        if self.process is not None:
            text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
            self.output = (self.output + text)[-self.OUTPUT_CHARS:]

    def _ask(self) -> None:
        if self._clock.elapsed() > self.START_TIMEOUT_MS:
            seconds = self.START_TIMEOUT_MS // 1000
            self._fail(f"The MLflow UI did not answer within {seconds} s.")
            return
        if self._reply is None and self.url is not None:
            request = QNetworkRequest(QUrl(self.url))
            request.setTransferTimeout(2000)
            self._reply = self._net.get(request)
            self._reply.finished.connect(self._on_reply)

    def _on_reply(self) -> None:
        reply, self._reply = self._reply, None
        status = reply.attribute(QNetworkRequest.Attribute.HttpStatusCodeAttribute)
        reply.deleteLater()
        if status == 200 and self.process is not None and not self.answering:
            self._poll.stop()
            self.answering = True
            self.ready.emit(self.url)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._fail(f"Could not start the MLflow UI: {self.process.errorString()}")

    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._read_output()
        if self.answering:
            self.stop()
        else:
            self._fail(f"The MLflow UI stopped while starting (exit code {code}).")

    def _fail(self, message: str) -> None:
        self._read_output()
        output = self.output.strip()
        self.stop()
        self.failed.emit(f"{message}\n\n{output}" if output else message)
