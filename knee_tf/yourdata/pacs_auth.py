"""How knee-tf reaches a PACS: its URL, credentials and TLS, and one line on why a request failed.

Credentials (:meth:`PacsAuth.from_cli`), never on the command line:

* HTTP basic auth: ``--user NAME``; the password from ``KNEE_TF_PACS_PASSWORD``, else the netrc
  file's (``--netrc FILE``, default ``~/.netrc``) entry for the URL's host and that login, else a
  prompt when stdin is a terminal;
* a bearer token from an environment variable: ``--token-env VAR``, else ``KNEE_TF_PACS_TOKEN``;
* TLS is always verified; ``--ca-bundle FILE`` trusts a private certificate authority.

A URL carrying ``user:pass@`` is refused. The session reads nothing else from the environment but
the proxy settings any HTTP client honours: no implicit ~/.netrc, no ``REQUESTS_CA_BUNDLE`` that
would silently replace ``--ca-bundle``. Secrets stay out of output: :class:`PacsAuth`'s repr hides
them, and :func:`redact` (which :meth:`PacsAuth.explain` applies to every message) removes any
``user:pass@`` and the secret values from a text.
"""

from __future__ import annotations

import getpass
import ipaddress
import netrc
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from knee_tf.core.errors import InputError

PASSWORD_ENV = "KNEE_TF_PACS_PASSWORD"
TOKEN_ENV = "KNEE_TF_PACS_TOKEN"
HIDDEN = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")  # up to the authority's last '@'


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the user information of every URL in it (``scheme://user:pass@``) and every
    non-empty string of ``secrets`` replaced by ``***``."""
    text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, HIDDEN)
    return text


def check_url(url: str):
    """``urlparse(url)`` of a DICOMweb root (http(s)://host[:port]/path) without credentials in it."""
    shown = redact(url)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"{shown!r}: not a DICOMweb URL (expected http(s)://host[:port]/path)")
    if parsed.username is not None or parsed.password is not None:
        raise InputError(f"{shown}: credentials do not go in --url (shell history and logs keep it): give --user NAME "
                         f"and the password in {PASSWORD_ENV}, a netrc file or at the prompt")
    try:
        parsed.port  # noqa: B018 (urlparse checks the port only when asked)
    except ValueError:
        raise InputError(f"{shown}: the port is not a number from 0 to 65535") from None
    return parsed


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str):
        self._token = token

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return f"Bearer({HIDDEN})"


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PacsAuth:
    """A PACS's DICOMweb root and how to authenticate to it (repr and str never show a secret)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    secret_from: str = ""  # where the password or token came from, for the hint when the PACS refuses it

    def __post_init__(self):
        check_url(self.url)

    @classmethod
    def from_cli(cls, url: str, user: str | None = None, netrc_file: str | None = None,
                 token_env: str | None = None, ca_bundle: str | None = None,
                 environ: Mapping[str, str] | None = None,
                 ask: Callable[[str], str] | None = None) -> PacsAuth:
        """Settings from the command line's options and the environment (``environ``, default
        ``os.environ``). ``ask(prompt)`` reads a password; by default ``getpass`` when stdin is a
        terminal. Raises InputError naming the option and what to do."""
        environ = os.environ if environ is None else environ
        parsed = check_url(url)
        bundle = None
        if ca_bundle:
            bundle = Path(ca_bundle).expanduser()
            if not bundle.is_file():
                raise InputError(f"--ca-bundle {ca_bundle}: no such file (expected the PEM certificate of the "
                                 "authority that signed the PACS's certificate)")
            if parsed.scheme != "https":
                raise InputError(f"--ca-bundle is for TLS, but {url} is plain http://: use https://")
        if user is not None and token_env:
            raise InputError("give either --user (basic auth) or --token-env (a bearer token), not both")
        if netrc_file and user is None:
            raise InputError("--netrc FILE gives the password of --user NAME: add --user")
        if user is not None:
            if not user.strip() or ":" in user:
                raise InputError(f"--user: expected a user name without ':' (the password never goes on the command "
                                 f"line: set {PASSWORD_ENV}, use a netrc file or answer the prompt)")
            password, source = _password(parsed.hostname, user, netrc_file, environ, ask)
            return cls(url, user=user, password=password, ca_bundle=bundle, secret_from=source)
        var = token_env or TOKEN_ENV
        token = environ.get(var, "").strip()
        if token_env and not token:
            raise InputError(f"--token-env {var}: that environment variable is not set or empty")
        if token:
            return cls(url, token=token, ca_bundle=bundle, secret_from=var)
        return cls(url, ca_bundle=bundle)

    @property
    def kind(self) -> str:
        """``basic``, ``bearer`` or ``none``."""
        return "basic" if self.user is not None else "bearer" if self.token else "none"

    @property
    def host_port(self) -> str:
        p = urlparse(self.url)
        return f"{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"

    def redact(self, text: str) -> str:
        return redact(text, (self.password or "", self.token or ""))

    def warning(self) -> str | None:
        """A line to show when credentials would cross the network unencrypted."""
        p = urlparse(self.url)
        if self.kind != "none" and p.scheme == "http" and not _is_loopback(p.hostname):
            return (f"warning: sending the {'password' if self.kind == 'basic' else 'token'} to {p.hostname} "
                    "unencrypted (http://): use https:// where the PACS offers it")
        return None

    def session(self) -> requests.Session:
        """A new ``requests.Session`` with these credentials and TLS settings (one per thread)."""
        s = requests.Session()
        s.trust_env = False  # no implicit ~/.netrc credentials, no REQUESTS_CA_BUNDLE over --ca-bundle ...
        s.proxies.update(requests.utils.get_environ_proxies(self.url))  # ... but the environment's proxy
        s.verify = str(self.ca_bundle) if self.ca_bundle else True
        if self.user is not None:  # UTF-8, as RFC 7617 recommends (requests would encode str as Latin-1)
            s.auth = requests.auth.HTTPBasicAuth(self.user.encode(), (self.password or "").encode())
        elif self.token:
            s.auth = _Bearer(self.token)
        return s

    def explain(self, e: Exception, what: str) -> str:
        """One line (redacted) on why ``what`` failed with the requests exception ``e``."""
        return self.redact(f"{self.url}: {self._reason(e, what)}")

    def _reason(self, e: Exception, what: str) -> str:
        text = str(e).lower()
        if isinstance(e, requests.exceptions.HTTPError):
            r = e.response
            if r is None:
                return f"{what} failed: {_short(e)}"
            if r.status_code == 401:
                return self._refused()
            if r.status_code == 403:
                who = f"user {self.user}" if self.user is not None else "these credentials"
                return f"the PACS does not allow {who} to {what} (HTTP 403): ask its administrator for access"
            return f"{what} failed: HTTP {r.status_code} {r.reason}"
        if isinstance(e, requests.exceptions.SSLError):
            if "mismatch" in text or "doesn't match" in text:
                return (f"the PACS's certificate is not issued for {urlparse(self.url).hostname}: use the host name "
                        "it names in --url")
            if "certificate verify failed" in text:
                vouch = f"{self.ca_bundle} does not vouch for it" if self.ca_bundle else "the authority that signed it"
                return f"the PACS's certificate is not trusted: pass --ca-bundle FILE ({vouch})"
            return f"TLS with {self.host_port} failed ({_short(e)}): does it speak https there, or http?"
        if isinstance(e, requests.exceptions.Timeout):
            return f"no answer in time while trying to {what}"
        if isinstance(e, requests.exceptions.ConnectionError):
            if "refused" in text:
                return f"nothing answers at {self.host_port} (connection refused): is the PACS running and the URL right?"
            if any(k in text for k in ("name or service not known", "nodename nor servname", "getaddrinfo failed",
                                       "temporary failure in name resolution", "name does not resolve")):
                return f"cannot find the host {urlparse(self.url).hostname}: is the URL right?"
            return f"the connection to {self.host_port} failed while trying to {what} ({_short(e)})"
        return f"{what} failed: {_short(e)}"

    def _refused(self) -> str:
        if self.kind == "basic":
            where = {PASSWORD_ENV: PASSWORD_ENV, "the prompt": "the password you typed"}.get(
                self.secret_from, f"the password in {self.secret_from}")
            return f"the PACS refused the user name or password (HTTP 401): check --user and {where}"
        if self.kind == "bearer":
            return f"the PACS refused the token (HTTP 401): check {self.secret_from} (tokens expire)"
        return (f"the PACS asks for credentials (HTTP 401): give --user NAME (password in {PASSWORD_ENV}, a netrc "
                f"file or at the prompt) or a bearer token in {TOKEN_ENV}")


def _netrc_password(path: Path, host: str, user: str) -> str | None:
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as e:  # its message may quote a token of the file: say only where
        raise InputError(f"{path}: not a valid netrc file (line {e.lineno})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror})") from None
    if entry and entry[2] and entry[0] in (user, "", None):
        return entry[2]
    return None


def _password(host: str, user: str, netrc_file: str | None, environ: Mapping[str, str],
              ask: Callable[[str], str] | None) -> tuple[str, str]:
    """(password, where it came from) for ``user`` at ``host``."""
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV], PASSWORD_ENV
    path = Path(netrc_file).expanduser() if netrc_file else Path.home() / ".netrc"
    if netrc_file or path.is_file():
        found = _netrc_password(path, host, user)
        if found:
            return found, str(path)
        if netrc_file:
            raise InputError(f"--netrc {netrc_file}: no 'machine {host} login {user} password ...' entry")
    if ask is None and sys.stdin is not None and sys.stdin.isatty():
        ask = getpass.getpass
    if ask is not None:
        try:
            typed = ask(f"password for {user} at {host}: ")
        except EOFError:
            typed = ""
        if typed:
            return typed, "the prompt"
    raise InputError(f"no password for --user {user}: set {PASSWORD_ENV}, add 'machine {host} login {user} password "
                     f"...' to ~/.netrc (or --netrc FILE), or run in a terminal to be asked")
