"""The OpenAI Python SDK over keyway's TLS listener, trusting a CA made at test time with the
openssl CLI: HTTP/1.1 and HTTP/2 (httpx with h2), a stream, a client that does not trust the CA,
and the HTTP/2 limits keyway announces in its SETTINGS frame (read with the h2 library)."""

import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import openai
import pytest

from conftest import free_ports
from fake_upstream import REPLY, STREAM_PIECES
from sdk_helpers import MESSAGES, MODEL, SDK_TIMEOUT_S, only_request, stream_pieces


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """A CA and a server certificate for 127.0.0.1 / localhost it issued (P-256)."""
    d = tmp_path
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=keyway interop CA", "-keyout", str(d / "ca.key"),
            "-out", str(d / "ca.crt"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=localhost", "-keyout", str(d / "tls.key"), "-out", str(d / "tls.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-days", "2", "-set_serial", "0x5005", "-in", str(d / "tls.csr"),
            "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-extfile", str(d / "ext.cnf"),
            "-out", str(d / "tls.crt"))
    return d


def tls_keyway(start_keyway, upstream, pki, extra=""):
    (tls_port,) = free_ports(1)
    kw = start_keyway(f"""
[store]
enabled = false
[providers.openai]
base_url = "{upstream.url}/v1"
api_key = "sk-provider-key"
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
[tls]
listen = "127.0.0.1:{tls_port}"
cert_file = "{pki / 'tls.crt'}"
key_file = "{pki / 'tls.key'}"
{extra}""")
    wait_for_port(tls_port)
    return kw, tls_port


def wait_for_port(port):
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"TLS listener on {port} never accepted")


def sdk(port, ca, http2):
    return openai.OpenAI(
        base_url=f"https://localhost:{port}/v1",
        api_key="unused",
        default_headers={"x-portkey-provider": "openai"},
        http_client=httpx.Client(verify=ssl.create_default_context(cafile=ca), http2=http2),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )


@pytest.mark.parametrize("http2,version", [(False, "HTTP/1.1"), (True, "HTTP/2")])
def test_openai_sdk_over_tls_with_a_custom_ca(start_keyway, upstream, pki, http2, version):
    _, port = tls_keyway(start_keyway, upstream, pki)
    client = sdk(port, str(pki / "ca.crt"), http2)
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)

    assert raw.http_response.http_version == version
    assert raw.parse().choices[0].message.content == REPLY
    got = only_request(upstream)
    assert got.path == "/v1/chat/completions"
    assert got.header("authorization") == ["Bearer unused"]


def test_openai_sdk_streams_over_http2_and_tls(start_keyway, upstream, pki):
    _, port = tls_keyway(start_keyway, upstream, pki)
    client = sdk(port, str(pki / "ca.crt"), http2=True)
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert stream.response.http_version == "HTTP/2"
        assert stream_pieces(stream) == STREAM_PIECES
    assert only_request(upstream).json()["stream"] is True


def test_a_client_that_does_not_trust_the_ca_is_refused(start_keyway, upstream, pki):
    _, port = tls_keyway(start_keyway, upstream, pki)
    client = sdk(port, None, http2=False)
    with pytest.raises(openai.APIConnectionError) as e:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert "CERTIFICATE_VERIFY_FAILED" in repr(e.value.__cause__)
    assert upstream.requests == []


def server_settings(sock):
    """Sends the client preface over `sock` and returns the server's first SETTINGS."""
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    for _ in range(20):
        data = sock.recv(65536)
        assert data, "connection closed before SETTINGS"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                return {k: v.new_value for k, v in event.changed_settings.items()}
    pytest.fail("no SETTINGS frame")


def test_http2_limits_are_announced_on_tls_and_h2c(start_keyway, upstream, pki):
    kw, port = tls_keyway(start_keyway, upstream, pki, extra="""
[listener]
h2c = true
h2_max_concurrent_streams = 8
h2_max_header_list_bytes = 4096
""")
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            over_tls = server_settings(tls)
    with socket.create_connection(("127.0.0.1", kw.port), timeout=5) as clear:
        over_h2c = server_settings(clear)
    for settings in (over_tls, over_h2c):
        assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 8
        assert settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 4096


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server(start_keyway, upstream, pki):
    _, port = tls_keyway(start_keyway, upstream, pki)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    # The client allows TLS 1.1, so a refusal is the server's (its protocol_version alert).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as e:
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert "ALERT_PROTOCOL_VERSION" in str(e.value)
