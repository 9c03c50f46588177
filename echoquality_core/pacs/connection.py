"""A DICOMweb connection: the server's URL, credentials from the environment or the OS keyring,
and one ``dicomweb_client.DICOMwebClient`` per thread.

Credentials are looked up, in order: ``ECHOQUALITY_PACS_TOKEN`` (bearer token),
``ECHOQUALITY_PACS_USER`` + ``ECHOQUALITY_PACS_PASSWORD`` (HTTP basic), the OS keyring (service
``echoquality-pacs``, entry named after the host and port: a "token" entry, or the password of
``ECHOQUALITY_PACS_USER`` / the keyring's own credential). They live only in memory: never in a
URL, a project, a setting or a log line. HTTP and network errors become :class:`PacsError` with a
one-line message.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

USER_ENV = "ECHOQUALITY_PACS_USER"
PASSWORD_ENV = "ECHOQUALITY_PACS_PASSWORD"
TOKEN_ENV = "ECHOQUALITY_PACS_TOKEN"
KEYRING_SERVICE = "echoquality-pacs"
TIMEOUT_S = (5.0, 120.0)  # connect, read

# dicomweb-client logs request URLs and filters (accession numbers) at INFO/DEBUG.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)


class PacsError(RuntimeError):
    """A PACS request failed; ``str(e)`` is one line for the user."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401/403)."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """HTTP basic (user, password) or a bearer token; repr never shows the secret."""

    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def source(self) -> str:
        """Words for error messages: which kind of credentials were sent."""
        if self.token:
            return "bearer token"
        return f"user name {self.user!r} and password" if self.user else "no credentials"


def keyring_entry(url: str) -> str:
    """The keyring user name under which the credentials for ``url`` are kept: host:port."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def find_credentials(url: str, user: str | None = None) -> Credentials:
    """Credentials for ``url`` from the environment, else the OS keyring, else none."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return Credentials(token=token)
    user = user or os.environ.get(USER_ENV) or None
    password = os.environ.get(PASSWORD_ENV)
    if user and password is not None:
        return Credentials(user, password)
    return _from_keyring(url, user) or Credentials(user, None)


def _from_keyring(url: str, user: str | None) -> Credentials | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    entry = keyring_entry(url)
    try:
        token = keyring.get_password(KEYRING_SERVICE, f"token@{entry}")
        if token:
            return Credentials(token=token)
        if user:
            password = keyring.get_password(KEYRING_SERVICE, f"{user}@{entry}")
            return Credentials(user, password) if password is not None else None
        found = keyring.get_credential(KEYRING_SERVICE, None)
    except KeyringError as exc:  # no usable backend (e.g. a headless server)
        log.debug("no keyring: %s", type(exc).__name__)
        return None
    return Credentials(found.username, found.password) if found is not None else None


def store_in_keyring(url: str, credentials: Credentials) -> None:
    """Keep credentials for ``url`` in the OS keyring (entries as :func:`find_credentials` reads)."""
    import keyring

    entry = keyring_entry(url)
    if credentials.token:
        keyring.set_password(KEYRING_SERVICE, f"token@{entry}", credentials.token)
    elif credentials.user and credentials.password is not None:
        keyring.set_password(KEYRING_SERVICE, f"{credentials.user}@{entry}", credentials.password)
    else:
        raise ValueError("nothing to store: give a token or a user name and password")


def check_url(url: str) -> str:
    """The DICOMweb base URL without a trailing slash; credentials in it are refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) DICOMweb URL: {url!r}")
    if parts.username or parts.password:
        raise ValueError("the PACS URL must not contain a user name or password; set "
                         f"{USER_ENV}/{PASSWORD_ENV} or use the keyring")
    return url.strip().rstrip("/")


class PacsConnection:
    """A DICOMweb server: ``client()`` gives this thread's ``DICOMwebClient``."""

    def __init__(self, url: str, credentials: Credentials | None = None, *,
                 timeout: float | tuple[float, float] = TIMEOUT_S):
        self.url = check_url(url)
        self.credentials = credentials if credentials is not None else find_credentials(url)
        self.timeout = timeout
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's requests session, carrying the credentials."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            creds = self.credentials
            if creds.token:
                session.headers["Authorization"] = f"Bearer {creds.token}"
            elif creds.user:
                session.auth = (creds.user, creds.password or "")
        return session

    def client(self):
        """This thread's ``dicomweb_client.DICOMwebClient`` (on this thread's session)."""
        client = getattr(self._local, "client", None)
        if client is None:
            from dicomweb_client import DICOMwebClient

            client = DICOMwebClient(self.url, session=self.session(), timeout=self.timeout)
            # dicomweb-client retries any exception 5 times with waits up to 16 s (30 s
            # before "connection refused" is reported): 3 tries within ~1 s are enough.
            client.set_http_retry_params(retry=True, max_attempts=3,
                                         wait_exponential_multiplier=250)
            self._local.client = client
        return client

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn HTTP and network errors raised inside into one-line :class:`PacsError`."""
        try:
            yield
        except requests.HTTPError as exc:
            raise self._http_error(what, exc.response) from None
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "no connection"
            raise PacsError(f"{what}: cannot reach the PACS at {self.url} ({reason})") from None
        except requests.Timeout:
            raise PacsError(f"{what}: the PACS at {self.url} did not answer in time") from None
        except requests.RequestException as exc:
            raise PacsError(f"{what}: {type(exc).__name__} talking to {self.url}") from None

    def _http_error(self, what: str, response: requests.Response | None) -> PacsError:
        status = response.status_code if response is not None else 0
        reason = (response.reason if response is not None else "") or "error"
        if status in (401, 403):
            return PacsAuthError(
                f"the PACS at {self.url} refused the {self.credentials.source} (HTTP {status} "
                f"{reason}); set {USER_ENV}/{PASSWORD_ENV} or {TOKEN_ENV}, or store them in the "
                "keyring")
        return PacsError(f"{what}: HTTP {status} {reason} from {self.url}")

    def check(self) -> None:
        """Raise :class:`PacsError` unless the server answers a QIDO-RS query."""
        with self.errors("checking the PACS"):
            self.client().search_for_studies(limit=1, fields=["StudyInstanceUID"])
