"""Credentials and TLS for DICOMweb: the sources of a password or token, redaction, the session, the
one-line explanations; then against a real Orthanc with AuthenticationEnabled, directly and behind
nginx terminating TLS with a certificate made here; and no secret in anything a pull prints or writes.
"""

import base64
import io
import logging
import sys

import pacs_servers
import pytest
import requests
from conftest import require_tool
from pacs_servers import ORTHANC_PLUGIN, free_port

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.core.vocab import MODEL_A
from knee_tf.yourdata.dicomweb import connect
from knee_tf.yourdata.pacs_auth import PASSWORD_ENV, TOKEN_ENV, PacsAuth, check_url, redact

URL = "https://pacs.example.org/dicom-web"
USER, PASSWORD, WRONG = "alice", "Kn33-pw-7f3a@x", "wrong-pw-91c2"


# ----- no server -----

@pytest.mark.parametrize("text, shown", [
    ("https://bob:s3cr3t@pacs:8042/dicom-web", "https://***@pacs:8042/dicom-web"),
    ("see http://bob:p@ss@host/x and HTTP://u:v@h", "see http://***@host/x and HTTP://***@h"),
    ("http://bob@host/path?q=a@b", "http://***@host/path?q=a@b"),
    ("no url here: a@b, https://host/x", "no url here: a@b, https://host/x"),
])
def test_redact_removes_user_information_from_urls(text, shown):
    assert redact(text) == shown


def test_redact_removes_secret_values_anywhere():
    assert redact("token abc.def.ghi in Bearer abc.def.ghi", ["abc.def.ghi", ""]) == "token *** in Bearer ***"


@pytest.mark.parametrize("url, expect", [
    ("ftp://nowhere", "not a DICOMweb URL"),
    ("https://bob:s3cr3t@pacs/dicom-web", "credentials do not go in --url"),
    ("https://bob@pacs/dicom-web", "credentials do not go in --url"),
    ("http://pacs:80x/dicom-web", "the port is not a number"),
])
def test_bad_urls_are_refused_in_one_line_without_the_secret(url, expect):
    with pytest.raises(InputError, match=expect) as e:
        check_url(url)
    assert len(str(e.value).splitlines()) == 1 and "s3cr3t" not in str(e.value)


def test_password_sources_in_order_env_then_netrc_then_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    asked = []

    def ask(prompt):
        asked.append(prompt)
        return "typed-pw"

    env = PacsAuth.from_cli(URL, user=USER, environ={PASSWORD_ENV: "env-pw"}, ask=ask)
    assert (env.password, env.secret_from) == ("env-pw", PASSWORD_ENV)
    (tmp_path / ".netrc").write_text(f"machine pacs.example.org login {USER} password netrc-pw\n")
    from_home = PacsAuth.from_cli(URL, user=USER, environ={}, ask=ask)
    assert (from_home.password, from_home.secret_from) == ("netrc-pw", str(tmp_path / ".netrc"))
    other = tmp_path / "other.netrc"
    other.write_text("machine elsewhere login x password y\nmachine pacs.example.org login carol password other-pw\n")
    assert PacsAuth.from_cli(URL, user="carol", netrc_file=str(other), environ={}, ask=ask).password == "other-pw"
    with pytest.raises(InputError, match="no 'machine pacs.example.org login alice password"):
        PacsAuth.from_cli(URL, user=USER, netrc_file=str(other), environ={}, ask=ask)
    assert not asked
    prompted = PacsAuth.from_cli(URL, user="dave", environ={}, ask=ask)  # ~/.netrc has no entry for dave
    assert (prompted.password, prompted.secret_from) == ("typed-pw", "the prompt")
    assert asked == ["password for dave at pacs.example.org: "]


def test_no_password_without_a_terminal_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: no prompt
    with pytest.raises(InputError, match=f"no password for --user {USER}: set {PASSWORD_ENV}") as e:
        PacsAuth.from_cli(URL, user=USER, environ={})
    assert len(str(e.value).splitlines()) == 1


def test_tokens_and_misuse_of_the_options(tmp_path):
    auth = PacsAuth.from_cli(URL, environ={TOKEN_ENV: " tok-1 \n"})
    assert (auth.kind, auth.token, auth.secret_from) == ("bearer", "tok-1", TOKEN_ENV)
    assert PacsAuth.from_cli(URL, token_env="MY_TOKEN", environ={"MY_TOKEN": "tok-2"}).token == "tok-2"
    assert PacsAuth.from_cli(URL, user=USER, environ={TOKEN_ENV: "tok-1", PASSWORD_ENV: "pw"}).kind == "basic"
    assert PacsAuth.from_cli(URL, environ={}).kind == "none"
    bad = [(dict(token_env="MY_TOKEN"), "--token-env MY_TOKEN: that environment variable is not set"),
           (dict(user=USER, token_env="MY_TOKEN"), "either --user"),
           (dict(netrc_file=str(tmp_path / "n")), "add --user"),
           (dict(user="alice:s3cr3t"), "expected a user name without ':'"),
           (dict(ca_bundle=str(tmp_path / "none.pem")), "no such file")]
    for kwargs, expect in bad:
        with pytest.raises(InputError, match=expect) as e:
            PacsAuth.from_cli(URL, environ={"MY_TOKEN": "", PASSWORD_ENV: "pw"}, **kwargs)
        assert len(str(e.value).splitlines()) == 1 and "s3cr3t" not in str(e.value)
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(InputError, match="plain http"):
        PacsAuth.from_cli("http://pacs/dicom-web", ca_bundle=str(tmp_path / "ca.pem"), environ={})


def test_a_netrc_parse_error_does_not_quote_the_file(tmp_path):
    bad = tmp_path / "bad.netrc"
    bad.write_text("machine pacs.example.org login alice\nhunter2-secret\n")
    with pytest.raises(InputError, match="not a valid netrc file") as e:
        PacsAuth.from_cli(URL, user=USER, netrc_file=str(bad), environ={})
    assert "hunter2" not in str(e.value)


def test_the_session_sends_what_was_chosen_and_reads_nothing_else(tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine pacs.example.org login eve password implicit-pw\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")

    def header(auth):
        s = auth.session()
        return s, s.prepare_request(requests.Request("GET", f"{URL}/studies")).headers.get("Authorization")

    s, sent = header(PacsAuth.from_cli(URL, user="zoë", environ={PASSWORD_ENV: "pässword"}, ca_bundle=str(ca)))
    assert sent == "Basic " + base64.b64encode("zoë:pässword".encode()).decode()
    assert s.merge_environment_settings(URL, {}, None, None, None)["verify"] == str(ca)
    assert header(PacsAuth.from_cli(URL, environ={TOKEN_ENV: "tok"}))[1] == "Bearer tok"
    s, sent = header(PacsAuth.from_cli(URL, environ={}))
    assert sent is None  # ~/.netrc is read only for --user
    assert s.merge_environment_settings(URL, {}, None, None, None)["verify"] is True


def test_repr_and_messages_never_show_a_secret():
    auth = PacsAuth(URL, user=USER, password=PASSWORD, secret_from=PASSWORD_ENV)
    bearer = PacsAuth(URL, token="tok-secret", secret_from=TOKEN_ENV)
    assert PASSWORD not in repr(auth) and "tok-secret" not in repr(bearer) + repr(bearer.session().auth)

    def http_error(code):
        r = requests.Response()
        r.status_code, r.reason = code, "Unauthorized"
        return requests.exceptions.HTTPError(f"{code} for url {URL} with {PASSWORD}", response=r)

    cases = [(auth, http_error(401), f"refused the user name or password (HTTP 401): check --user and {PASSWORD_ENV}"),
             (bearer, http_error(401), f"refused the token (HTTP 401): check {TOKEN_ENV}"),
             (PacsAuth(URL), http_error(401), "asks for credentials (HTTP 401): give --user NAME"),
             (auth, http_error(403), "does not allow user alice to query (HTTP 403)"),
             (auth, requests.exceptions.SSLError(f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed {PASSWORD}"),
              "certificate is not trusted: pass --ca-bundle FILE"),
             (auth, requests.exceptions.SSLError("certificate verify failed: Hostname mismatch"), "not issued for pacs"),
             (auth, requests.exceptions.ConnectionError(f"[Errno 111] Connection refused {PASSWORD}"),
              "nothing answers at pacs.example.org:443 (connection refused)"),
             (auth, requests.exceptions.ConnectionError(f"odd failure {PASSWORD} at http://u:{PASSWORD}@h"),
              "the connection to pacs.example.org:443 failed")]
    for who, exc, expect in cases:
        line = who.explain(exc, "query")
        assert expect in line and PASSWORD not in line and len(line.splitlines()) == 1, line


def test_a_warning_when_a_secret_would_travel_unencrypted():
    assert "unencrypted" in PacsAuth("http://pacs/dicom-web", user=USER, password="pw").warning()
    assert PacsAuth("http://127.0.0.1:8042/dicom-web", user=USER, password="pw").warning() is None
    assert PacsAuth("http://pacs/dicom-web").warning() is None
    assert PacsAuth(URL, token="t").warning() is None


# ----- a real Orthanc with AuthenticationEnabled, directly and behind nginx with TLS -----

@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """An Orthanc that lets in only alice (loaded with two phantom exams) and nginx with TLS in front."""
    exe = require_tool("Orthanc", why="the authentication tests need a real PACS")
    require_tool(ORTHANC_PLUGIN, why="Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb)")
    nginx = require_tool("nginx", "/usr/sbin/nginx", why="the TLS tests put nginx (Debian nginx-light) in front of Orthanc")
    require_tool("openssl", why="the TLS tests make their certificates with openssl")

    root = tmp_path_factory.mktemp("secured")
    with pacs_servers.orthanc(exe, root / "orthanc", users={USER: PASSWORD}) as http:
        certs = pacs_servers.tls_certificates(root / "tls")
        with pacs_servers.nginx_tls_proxy(nginx, root / "nginx", http.removesuffix("/dicom-web"), certs["cert"],
                                          certs["key"], certs["ca"]) as https:
            df = pacs_servers.load_phantom_exams(connect(PacsAuth(http, user=USER, password=PASSWORD)),
                                                 root / "synth", n_exams=2)
            yield {"http": http, "https": f"{https}/dicom-web", "ca": certs["ca"], "df": df,
                   "access_log": root / "nginx" / "access.log"}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.slow  # trains a tiny model and pushes its Grad-CAM overlays: about a minute
def test_authenticated_pull_and_push(secured, tmp_path, tiny_trained_model, monkeypatch, capsys):
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.pipeline import Run

    url, out = secured["http"], tmp_path / "pulled"
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(["pull", "--url", url, "--user", USER, "--since", "2000-01-01", "--out", str(out)]) == 0
    assert f"retrieved {len(secured['df'])} instances of 2 studies" in capsys.readouterr().out

    run = Run(tmp_path / "run", StudyConfig.smoke(name="mydata", manifest=str(out / "data_manifest.csv"), data_root=str(out),
                                                  image_size=64, cache_dir=str(tmp_path / "cache")))
    run.config.save(run.layout.config)
    run.layout.model(MODEL_A, 0).parent.mkdir(parents=True)
    tiny_trained_model.save(run.layout.model(MODEL_A, 0))
    push = ["push", "--url", url, "--user", USER, "--run", str(run.root), "--arms", MODEL_A]
    assert main(push) == 0
    assert capsys.readouterr().out.count("Model A seed 0: study") == 2

    monkeypatch.setenv(PASSWORD_ENV, WRONG)
    for argv in (["pull", "--url", url, "--user", USER, "--since", "2000-01-01", "--out", str(tmp_path / "x")], push):
        assert main(argv) == 2
        line = _one_error_line(capsys)
        assert f"the PACS refused the user name or password (HTTP 401): check --user and {PASSWORD_ENV}" in line
    monkeypatch.delenv(PASSWORD_ENV)
    assert main(["pull", "--url", url, "--since", "2000-01-01", "--out", str(tmp_path / "x")]) == 2
    assert "the PACS asks for credentials (HTTP 401)" in _one_error_line(capsys)


def test_pull_over_tls_through_the_proxy(secured, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    base = ["pull", "--url", secured["https"], "--user", USER, "--since", "2000-01-01", "--out", str(tmp_path / "p")]
    assert main(base) == 2  # the certificate's authority is not among the system's
    assert "the PACS's certificate is not trusted: pass --ca-bundle FILE" in _one_error_line(capsys)
    assert main([*base, "--ca-bundle", str(secured["ca"])]) == 0
    held = len(connect(PacsAuth(secured["http"], user=USER, password=PASSWORD)).search_for_instances(get_remaining=True))
    assert held >= len(secured["df"])  # the phantom exams, and overlays if the push above ran
    assert f"retrieved {held} instances of 2 studies" in capsys.readouterr().out
    assert len(list((tmp_path / "p").rglob("*.dcm"))) == held
    closed = f"https://127.0.0.1:{free_port()}/dicom-web"
    assert main(["pull", "--url", closed, "--since", "2000-01-01", "--out", str(tmp_path / "x")]) == 2
    assert "nothing answers at 127.0.0.1:" in _one_error_line(capsys)


def test_no_credential_in_anything_an_authenticated_pull_prints_logs_or_writes(secured, tmp_path, monkeypatch,
                                                                             capsys, caplog):
    caplog.set_level(logging.DEBUG)  # every library's log records, as a log file would keep them
    out = tmp_path / "pulled"
    https = secured["https"]
    pull = ["pull", "--since", "2000-01-01", "--out", str(out), "--ca-bundle", str(secured["ca"])]
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main([*pull, "--url", https, "--user", USER, "--workers", "2"]) == 0
    assert main([*pull, "--url", https.replace("://", f"://{USER}:{PASSWORD}@")]) == 2  # refused, not echoed
    monkeypatch.setenv(PASSWORD_ENV, WRONG)
    assert main([*pull, "--url", https, "--user", USER]) == 2
    printed = capsys.readouterr()
    texts = {"stdout": printed.out, "stderr": printed.err, "log records": caplog.text,
             "nginx access log": secured["access_log"].read_text()}
    texts |= {str(f): f.read_bytes().decode("latin-1") for f in out.rglob("*") if f.is_file()}
    assert "data_manifest.csv" in " ".join(texts) and "credentials do not go in --url" in printed.err
    assert "GET /dicom-web/" in texts["nginx access log"] and "/studies" in texts["log records"]
    for secret in (PASSWORD, WRONG, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, (secret, leaks)
