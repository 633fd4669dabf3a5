"""Real servers for the PACS tests and bench/pull.py, on loopback only (127.0.0.1), stopped on exit.

* :func:`orthanc`: Orthanc with its DICOMweb plugin, optionally with HTTP basic auth and users;
* :func:`tls_certificates`: a private certificate authority and a server certificate for
  127.0.0.1/localhost signed by it (openssl);
* :func:`nginx_tls_proxy`: nginx terminating TLS in front of a local HTTP port, as real
  deployments put Orthanc behind a reverse proxy (Orthanc 1.10.1's own SslEnabled crashes on its
  first HTTPS request).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom

from knee_tf.phantom import synthesize
from knee_tf.study.config import StudyConfig

ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(answers: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if answers():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-800:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {seconds:.0f} s: {log.read_text()[-800:]}")


def _answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1, context=context).read()
    except urllib.error.HTTPError:
        return True  # 401 and the like: it is up
    except OSError:
        return False
    return True


@contextmanager
def _running(cmd: list[str], log_path: Path, answers: Callable[[], bool], what: str) -> Iterator[subprocess.Popen]:
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until(answers, proc, log_path, what)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def orthanc(exe: str, folder: Path, users: dict[str, str] | None = None) -> Iterator[str]:
    """Run Orthanc (``exe``) with its DICOMweb plugin on a free loopback port, its database in
    ``folder``; with ``users``, HTTP basic auth is on and only they get in. Yields the DICOMweb root."""
    folder.mkdir(parents=True, exist_ok=True)
    http = free_port()
    cfg = {"Name": "knee-tf-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
           "HttpPort": http, "DicomPort": free_port(), "RemoteAccessAllowed": False,
           "AuthenticationEnabled": bool(users), "RegisteredUsers": users or {}, "Plugins": [ORTHANC_PLUGIN],
           "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True}}
    (folder / "orthanc.json").write_text(json.dumps(cfg))
    base = f"http://127.0.0.1:{http}"
    with _running([exe, str(folder / "orthanc.json")], folder / "orthanc.log",
                  lambda: _answers(f"{base}/system"), "Orthanc"):
        yield f"{base}/dicom-web"


def tls_certificates(folder: Path) -> dict[str, Path]:
    """A private CA (``ca``) and a server certificate (``cert``, ``key``) for 127.0.0.1 and localhost
    that it signed, made with openssl into ``folder``; the paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    p = {k: folder / f"{k}.pem" for k in ("ca", "ca_key", "cert", "key", "csr")}
    ext = folder / "server.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(p["ca_key"]), "-out", str(p["ca"]),
            "-days", "2", "-subj", "/CN=knee-tf test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(p["key"]), "-out", str(p["csr"]),
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(p["csr"]), "-CA", str(p["ca"]), "-CAkey", str(p["ca_key"]),
            "-CAcreateserial", "-out", str(p["cert"]), "-days", "2", "-extfile", str(ext))
    return p


@contextmanager
def nginx_tls_proxy(exe: str, folder: Path, upstream: str, cert: Path, key: Path, ca: Path) -> Iterator[str]:
    """Run nginx (``exe``) on a free loopback port, TLS with ``cert``/``key``, passing every request
    to ``upstream`` (http://127.0.0.1:PORT). Yields https://127.0.0.1:PORT; its access log is
    ``folder/access.log``, its errors go to ``folder/nginx.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = "\n".join(f"  {k}_temp_path {folder / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (folder / "nginx.conf").write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
  access_log {folder / 'access.log'};
{temp}
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass {upstream};
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
    }}
  }}
}}
""")
    context = ssl.create_default_context(cafile=str(ca))
    with _running([exe, "-p", str(folder), "-e", "stderr", "-c", str(folder / "nginx.conf")],
                  folder / "nginx.log", lambda: _answers(f"https://127.0.0.1:{port}/system", context), "nginx"):
        yield f"https://127.0.0.1:{port}"


def load_phantom_exams(client, folder: Path, n_exams: int, matrix: int = 64, workers: int = 1, batch: int = 32):
    """Synthesize ``n_exams`` phantom knee exams (three-plane localizers, the study's difficulty) into
    ``folder`` and store them in the PACS behind ``client`` with STOW-RS. Returns their manifest."""
    df = synthesize(folder, n_exams=n_exams, matrix=matrix, workers=workers, progress=False,
                    difficulty=StudyConfig().synth_difficulty())
    files = [folder / p for p in df["path"]]
    for i in range(0, len(files), batch):
        client.store_instances([pydicom.dcmread(f) for f in files[i:i + batch]])
    return df
