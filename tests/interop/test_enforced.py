"""The enforced posture (README "Client authentication") with real clients: the OpenAI and
AzureOpenAI SDKs presenting gateway keys, and JWTs issued by oidc-provider. Each test checks what
the fakes received: the provider credential keyway holds, never the caller's gateway key or JWT."""

import hashlib
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import openai
import pytest

from conftest import keyway_bin
from fake_entra import COGNITIVE_SCOPE, BearerUpstream, FakeEntra
from fake_upstream import REPLY, STREAM_PIECES
from sdk_helpers import (
    MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog, assert_forwarded, only_request, stream_pieces,
)
from test_oidc_provider import OidcProvider, header, http

TIMEOUTS = """
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
"""
READY_TIMEOUT_S = 20
JWT_AUDIENCE = "api://keyway-gateway"
JWT_REFUSED = "keyway interop: token refused"
JWT_REFUSED_STATUS = 403  # not the default 401: shows the configured status is used


# --- helpers -----------------------------------------------------------------------------------

def new_gateway_key(workspace, role="member", **extra):
    """(key, [[api_keys]] TOML block) from `keyway keys new`; extra fields appended to the block."""
    out = subprocess.run(
        [str(keyway_bin()), "keys", "new", "--workspace", workspace, "--role", role],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout
    keys = re.findall(r"\bkw-[A-Za-z0-9_-]+", out)
    assert len(keys) == 1, "keys new printed no single kw- key"
    key = keys[0]
    block = out[out.index("[[api_keys]]"):].strip()
    digest = re.search(r'^hash = "sha256:([0-9a-f]{64})"$', block, re.M).group(1)
    assert digest == hashlib.sha256(key.encode()).hexdigest(), "printed hash is not sha256(key)"
    assert f'workspace = "{workspace}"' in block and f'role = "{role}"' in block
    for k, v in extra.items():
        block += f'\n{k} = "{v}"'
    return key, block + "\n"


def wait_ready(keyway):
    """/readyz is 200 once every configured credential holds a token and every JWKS is loaded."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{keyway.metrics_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = e.code
        except OSError as e:
            last = e
        time.sleep(0.1)
    pytest.fail(f"keyway /readyz not 200 after {READY_TIMEOUT_S}s ({last}); log:\n"
                f"{keyway.log_text()[-3000:]}")


def openai_client(keyway, api_key, sent, **headers):
    return openai.OpenAI(
        base_url=f"{keyway.url}/v1",
        api_key=api_key,
        default_headers=headers,
        http_client=sent.client(),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )


def assert_refused(exc_info, status, code, message=None, *, secrets_=()):
    err = exc_info.value
    assert err.status_code == status
    body = err.response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"message", "type", "code"}, body
    assert body["error"]["code"] == code, body
    if message is not None:
        assert body["error"]["message"] == message, body
    text = err.response.text + "".join(f"{k}: {v}" for k, v in err.response.headers.items())
    for s in secrets_:
        assert s not in text, "the error echoes the caller's credential"
    if status == 401:
        assert err.response.headers.get("www-authenticate", "").startswith("Bearer")
    return body


def assert_not_upstream(upstream, *values):
    for r in upstream.requests:
        for v in values:
            leaks = [k for k, hv in r.headers if v in hv]
            assert leaks == [], f"a caller credential reached the upstream in {leaks}"
            assert v.encode() not in r.body


def provider_key(team):
    return f"sk-provider-{team}-{secrets.token_hex(12)}"


# --- 1. OpenAI SDK with gateway keys and virtual keys ------------------------------------------

@pytest.fixture
def openai_enforced(start_keyway, upstream, secrets_registry):
    """keyway with teams a and b, each with a gateway key and a virtual key for openai."""
    key_a, block_a = new_gateway_key("team-a")
    key_b, block_b = new_gateway_key("team-b")
    for k in (key_a, key_b):
        secrets_registry.add(k)
    prov_a, prov_b = provider_key("a"), provider_key("b")
    keyway = start_keyway(TIMEOUTS + f"""
[auth]
mode = "enforced"

[providers.openai]
base_url = "{upstream.url}/v1"

[workspaces.team-a]
allowed_providers = ["openai"]

[workspaces.team-b]
allowed_providers = ["openai"]

[credentials.openai-a]
type = "api_key"
key = "{prov_a}"

[credentials.openai-b]
type = "api_key"
key = "{prov_b}"

[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"

[virtual_keys.vk-b]
workspace = "team-b"
provider = "openai"
credential = "openai-b"

{block_a}
{block_b}
""")
    wait_ready(keyway)
    return keyway, {"a": key_a, "b": key_b}, {"a": prov_a, "b": prov_b}


def test_openai_sdk_gateway_key_and_virtual_key_chat_and_stream(openai_enforced, upstream):
    keyway, keys, prov = openai_enforced
    sent = SentLog()
    client = openai_client(keyway, keys["a"], sent, **{"x-portkey-virtual-key": "vk-a"})

    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert resp.choices[0].message.content == REPLY
    assert sent.only().headers["authorization"] == f"Bearer {keys['a']}"
    assert_forwarded(
        only_request(upstream), sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value=f"Bearer {prov['a']}",
        absent=[keys["a"], keys["b"], prov["b"], "vk-a"],
    )

    upstream.requests.clear()
    sent = SentLog()
    client = openai_client(keyway, keys["a"], sent, **{"x-portkey-virtual-key": "vk-a"})
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert stream_pieces(stream) == STREAM_PIECES
    got = only_request(upstream)
    assert got.json()["stream"] is True
    assert_forwarded(
        got, sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value=f"Bearer {prov['a']}",
        absent=[keys["a"], keys["b"], prov["b"], "vk-a"],
    )


def test_openai_sdk_wrong_gateway_key_is_401_and_nothing_goes_upstream(
        openai_enforced, upstream, secrets_registry):
    keyway, keys, _ = openai_enforced
    wrong = "kw-" + secrets.token_urlsafe(32)
    secrets_registry.add(wrong)
    client = openai_client(keyway, wrong, SentLog(), **{"x-portkey-virtual-key": "vk-a"})
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert_refused(e, 401, "invalid_api_key", secrets_=[wrong])
    # Streamed requests are refused the same way.
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert_refused(e, 401, "invalid_api_key", secrets_=[wrong])
    assert upstream.requests == []


def test_openai_sdk_other_teams_virtual_key_is_403_and_nothing_goes_upstream(
        openai_enforced, upstream):
    keyway, keys, prov = openai_enforced
    client = openai_client(keyway, keys["a"], SentLog(), **{"x-portkey-virtual-key": "vk-b"})
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    body = assert_refused(e, 403, "forbidden", secrets_=[keys["a"], prov["b"]])
    assert body["error"]["type"] == "permission_error"
    assert upstream.requests == []
    # The same virtual key works for its own team: the 403 was about the team, not the key.
    client = openai_client(keyway, keys["b"], SentLog(), **{"x-portkey-virtual-key": "vk-b"})
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices
    assert only_request(upstream).header("authorization") == [f"Bearer {prov['b']}"]


# --- 2. AzureOpenAI SDK, gateway key as its api-key, Entra service principal upstream --------

TENANT, CLIENT_ID = "tenant-enforced", "sp-client-id"


@pytest.fixture
def sp_secret(secrets_registry):
    s = "entra-sp-secret-" + secrets.token_urlsafe(24)
    secrets_registry.add(s)
    return s


@pytest.fixture
def entra(sp_secret, secrets_registry):
    server = FakeEntra(TENANT, CLIENT_ID, client_secret=sp_secret,
                       on_issue=secrets_registry.add).start()
    yield server
    server.stop()


@pytest.fixture
def entra_upstream(entra):
    server = BearerUpstream(entra).start()
    yield server
    server.stop()


def test_fake_entra_secret_mode_is_strict(entra, sp_secret):
    """The fake on its own: a lenient one would let keyway send a wrong secret unnoticed."""
    url = f"{entra.url}/{TENANT}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID,
            "scope": COGNITIVE_SCOPE, "client_secret": sp_secret}
    status, body = http("POST", url, {**form, "client_secret": sp_secret + "x"})
    assert (status, body["error"], body["error_codes"]) == (401, "invalid_client", [7000215])
    status, body = http("POST", url, {**form, "client_assertion": "a.b.c"})
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = http("POST", url, {**form, "scope": "api://other/.default"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert entra.issued == []
    status, body = http("POST", url, form)
    assert status == 200 and entra.issued == [body["access_token"]]
    assert urllib.parse.parse_qs(entra.accepted()[0].body.decode())["client_secret"] == [sp_secret]


def test_azure_sdk_gateway_key_front_door_route_with_entra_service_principal(
        start_keyway, entra, entra_upstream, sp_secret, secrets_registry):
    key, block = new_gateway_key("team-a")
    secrets_registry.add(key)
    keyway = start_keyway(TIMEOUTS + f"""
[auth]
mode = "enforced"

[azure]
authority_host = "{entra.url}"

[workspaces.team-a]

[credentials.azure-sp]
type = "entra"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "{sp_secret}"

[[routes]]
name = "azure"
path_prefix = "/openai/"
provider = "azure-openai"
upstream = "{entra_upstream.url}"
credential = "azure-sp"

{block}
""")
    wait_ready(keyway)  # the configured credential's token is fetched at start-up
    sent = SentLog()
    client = openai.AzureOpenAI(
        azure_endpoint=keyway.url, api_key=key, api_version="2024-10-21",
        http_client=sent.client(), max_retries=0, timeout=SDK_TIMEOUT_S,
    )
    resp = client.chat.completions.create(model="my-deployment", messages=MESSAGES)

    assert resp.choices[0].message.content == REPLY
    assert sent.only().headers["api-key"] == key
    # Entra saw exactly the service principal's client-credentials form, with its secret.
    accepted = entra.accepted()
    assert len(accepted) >= 1 and all(r.refused is None for r in entra.requests), [
        r.refused for r in entra.requests]
    form = {k: v[0] for k, v in accepted[0].form.items()}
    assert form == {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                    "scope": COGNITIVE_SCOPE, "client_secret": sp_secret}
    assert key not in accepted[0].body.decode()
    # The upstream saw the Entra token only: no api-key header, no gateway key anywhere.
    got = only_request(entra_upstream)
    assert got.header("authorization") in ([f"Bearer {t}"] for t in entra.issued)
    assert_forwarded(
        got, sent.only(),
        path="/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21",
        auth_header="authorization", auth_value=got.header("authorization")[0],
        absent=[key, sp_secret],
    )

    # The route still requires a gateway key: a wrong one is refused before Entra or upstream.
    wrong = "kw-" + secrets.token_urlsafe(32)
    secrets_registry.add(wrong)
    bad = openai.AzureOpenAI(
        azure_endpoint=keyway.url, api_key=wrong, api_version="2024-10-21",
        http_client=SentLog().client(), max_retries=0, timeout=SDK_TIMEOUT_S,
    )
    n_entra = len(entra.requests)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert_refused(e, 401, "invalid_api_key", secrets_=[wrong])
    assert len(entra_upstream.requests) == 1 and len(entra.requests) == n_entra


# --- 3. JWTs from oidc-provider ----------------------------------------------------------------

@pytest.fixture
def idp(tmp_path, secrets_registry):
    # Its log stays out of keyway's log directory (the end-of-run scan reads only keyway's).
    p = OidcProvider(tmp_path, workspace="team-a", roles=("llm.user", "reader"))
    secrets_registry.add(p.client_secret)
    yield p
    p.stop()


def jwt_config(idp, upstream, prov):
    return TIMEOUTS + f"""
[auth]
mode = "enforced"

[[auth.jwt]]
openid_config = "{idp.discovery}"
issuers = ["{idp.issuer}"]
audiences = ["{JWT_AUDIENCE}"]
required_claims = [{{ name = "roles", match = "any", values = ["llm.user", "llm.admin"] }}]
failed_validation_httpcode = {JWT_REFUSED_STATUS}
failed_validation_error_message = "{JWT_REFUSED}"

[providers.openai]
base_url = "{upstream.url}/v1"

[workspaces.team-a]
allowed_providers = ["openai"]

[credentials.openai-a]
type = "api_key"
key = "{prov}"

[virtual_keys.vk-a]
workspace = "team-a"
provider = "openai"
credential = "openai-a"
"""


def jwt_token(idp, secrets_registry, **form):
    token = idp.access_token(**form)
    secrets_registry.add(token)
    return token


def chat_with_jwt(keyway, token):
    sent = SentLog()
    client = openai_client(keyway, token, sent, **{"x-portkey-virtual-key": "vk-a"})
    return client.chat.completions.create(model=MODEL, messages=MESSAGES), sent


def test_jwt_from_oidc_provider_through_a_virtual_key(
        start_keyway, upstream, idp, secrets_registry):
    prov = provider_key("a")
    keyway = start_keyway(jwt_config(idp, upstream, prov))
    wait_ready(keyway)
    token = jwt_token(idp, secrets_registry, resource=JWT_AUDIENCE)

    resp, sent = chat_with_jwt(keyway, token)
    assert resp.choices[0].message.content == REPLY
    assert sent.only().headers["authorization"] == f"Bearer {token}"
    assert_forwarded(
        only_request(upstream), sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value=f"Bearer {prov}",
        absent=[token, token.split(".")[2]],
    )

    # A token the same provider issued for another API: the configured status and message.
    other = jwt_token(idp, secrets_registry)  # the provider's default audience, api://keyway
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat_with_jwt(keyway, other)
    assert_refused(e, JWT_REFUSED_STATUS, "invalid_token", JWT_REFUSED, secrets_=[other])
    # A tampered token (signature of another token) is refused the same way.
    forged = ".".join(token.split(".")[:2] + [other.split(".")[2]])
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat_with_jwt(keyway, forged)
    assert_refused(e, JWT_REFUSED_STATUS, "invalid_token", JWT_REFUSED, secrets_=[forged])
    assert len(upstream.requests) == 1
    assert_not_upstream(upstream, token, other)


def test_jwt_without_the_required_role_is_refused(start_keyway, upstream, tmp_path,
                                                  secrets_registry):
    idp = OidcProvider(tmp_path, workspace="team-a", roles=("reader",))
    secrets_registry.add(idp.client_secret)
    try:
        keyway = start_keyway(jwt_config(idp, upstream, provider_key("a")))
        wait_ready(keyway)
        token = jwt_token(idp, secrets_registry, resource=JWT_AUDIENCE)
        with pytest.raises(openai.PermissionDeniedError) as e:
            chat_with_jwt(keyway, token)
        assert_refused(e, JWT_REFUSED_STATUS, "invalid_token", JWT_REFUSED, secrets_=[token])
        assert upstream.requests == []
    finally:
        idp.stop()


def test_jwt_signed_by_a_rotated_key_is_accepted_without_restart(
        start_keyway, upstream, idp, secrets_registry):
    prov = provider_key("a")
    keyway = start_keyway(jwt_config(idp, upstream, prov))
    # The start-up JWKS fetch must be done, or the first request would spend the refetch.
    wait_ready(keyway)
    pid = keyway.proc.pid
    old = jwt_token(idp, secrets_registry, resource=JWT_AUDIENCE)
    assert chat_with_jwt(keyway, old)[0].choices

    new_kid = idp.rotate()
    new = jwt_token(idp, secrets_registry, resource=JWT_AUDIENCE)
    assert header(new)["kid"] == new_kid != header(old)["kid"]
    # The first token with the unknown kid makes keyway refetch the JWKS; no restart.
    resp, _ = chat_with_jwt(keyway, new)
    assert resp.choices[0].message.content == REPLY
    assert keyway.proc.poll() is None and keyway.proc.pid == pid
    assert upstream.requests[-1].header("authorization") == [f"Bearer {prov}"]
    # The old key is still published, so its tokens still pass.
    assert chat_with_jwt(keyway, old)[0].choices

    # A second rotation within the minute: the unknown-kid refetch is rate-limited (at most
    # once a minute), so the newest key is not known yet and its token is refused.
    newer_kid = idp.rotate()
    newer = jwt_token(idp, secrets_registry, resource=JWT_AUDIENCE)
    assert header(newer)["kid"] == newer_kid
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat_with_jwt(keyway, newer)
    assert_refused(e, JWT_REFUSED_STATUS, "invalid_token", JWT_REFUSED, secrets_=[newer])
    assert chat_with_jwt(keyway, new)[0].choices
    assert len(upstream.requests) == 4
    assert_not_upstream(upstream, old, new, newer)
