"""The Entra-like OpenID provider (oidc-provider, tests/interop/oidc/server.js) on its own, no
keyway: discovery, client authentication, RS256 access tokens that verify against its JWKS, and
key rotation. A provider that accepted anything would let keyway's JWT validation bugs pass.
`OidcProvider` is importable by the keyway JWT tests."""

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jwt
import pytest

from aws_servers import Server

SERVER_JS = Path(__file__).parent / "oidc" / "server.js"
CACHE = Path(os.environ.get("KEYWAY_CACHE") or Path.home() / ".cache/keyway")
MODULES = CACHE / "oidc" / "node_modules"
TENANT, CLIENT_ID, CLIENT_SECRET = "tenant1", "keyway-client", "oidc-client-secret-7f3a"
AUDIENCE = "api://keyway"
READY_TIMEOUT_S = 20

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, form=None):
    """(status, parsed JSON body) without raising on 4xx/5xx."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class OidcProvider(Server):
    """server.js on a free loopback port. Entra paths: issuer {url}/{tenant}/v2.0, token
    {url}/{tenant}/oauth2/v2.0/token, keys {url}/{tenant}/discovery/v2.0/keys."""

    def __init__(self, log_dir, tenant=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                 workspace=None, roles=()):
        node = shutil.which("node")
        if node is None or not (MODULES / "oidc-provider").is_dir():
            raise FileNotFoundError(f"node or {MODULES}/oidc-provider missing: run tests/setup.sh")
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "OIDC_NODE_MODULES": str(MODULES)}
        if workspace:
            env["OIDC_WORKSPACE"] = workspace
        if roles:
            env["OIDC_ROLES"] = ",".join(roles)
        log = Path(log_dir) / f"oidc-{port}.log"
        proc = subprocess.Popen(
            [node, str(SERVER_JS), str(port), tenant, client_id, client_secret],
            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        super().__init__("oidc-provider", proc, port, log)
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.issuer = f"{self.url}/{tenant}/v2.0"
        self.discovery = f"{self.issuer}/.well-known/openid-configuration"
        self.token_endpoint = f"{self.url}/{tenant}/oauth2/v2.0/token"
        self.jwks_uri = f"{self.url}/{tenant}/discovery/v2.0/keys"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {self.log_text()}")
            try:
                if http("GET", self.discovery)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"oidc-provider not ready: {self.log_text()}")

    def token(self, secret=None, **form):
        """(status, body) of a client_credentials request (client_secret_post)."""
        body = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret if secret is None else secret, **form}
        return http("POST", self.token_endpoint, body)

    def access_token(self, **form):
        status, body = self.token(**form)
        assert status == 200, body
        return body["access_token"]

    def rotate(self):
        """Adds a signing key and makes it the active one; returns its kid."""
        status, body = http("POST", f"{self.url}/rotate", {})
        assert status == 200, body
        return body["kid"]


def header(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


def verify(provider, token, audience=AUDIENCE):
    key = jwt.PyJWKClient(provider.jwks_uri, cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,
                      issuer=provider.issuer, options={"require": ["exp", "iat", "iss", "aud"]})


@pytest.fixture
def idp(tmp_path):
    p = OidcProvider(tmp_path, workspace="team-a", roles=("reader", "writer"))
    yield p
    p.stop()


def test_discovery_names_entra_paths_and_listens_on_loopback_only(idp):
    status, doc = http("GET", idp.discovery)
    assert status == 200
    assert doc["issuer"] == idp.issuer
    assert doc["token_endpoint"] == idp.token_endpoint
    assert doc["jwks_uri"] == idp.jwks_uri
    assert "client_credentials" in doc["grant_types_supported"]
    status, jwks = http("GET", idp.jwks_uri)
    assert status == 200
    assert [(k["kty"], k["alg"], k["use"]) for k in jwks["keys"]] == [("RSA", "RS256", "sig")]
    assert not {"d", "p", "q"} & set(jwks["keys"][0]), "private members published"
    idp.assert_only_own_port()


def test_client_authentication_is_enforced(idp):
    status, body = idp.token(secret="wrong-secret")
    assert status == 401, body
    assert body["error"] == "invalid_client"
    status, body = http("POST", idp.token_endpoint, {
        "grant_type": "client_credentials", "client_id": "someone-else", "client_secret": "x"})
    assert (status, body["error"]) == (401, "invalid_client")
    # Scopes the resource server does not define are dropped, not granted.
    token = idp.access_token(scope="root admin")
    assert verify(idp, token)["scope"] == "admin"


def test_access_token_is_an_rs256_jwt_verifiable_against_the_jwks(idp):
    status, body = idp.token(scope="admin")
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    token = body["access_token"]
    h = header(token)
    assert h["alg"] == "RS256" and h["kid"]
    claims = verify(idp, token)
    assert claims["aud"] == AUDIENCE
    assert claims["azp"] == claims["client_id"] == claims["sub"] == CLIENT_ID
    assert claims["tid"] == TENANT
    assert claims["scope"] == "admin"
    assert claims["portkey_workspace"] == "team-a"
    assert claims["roles"] == ["reader", "writer"]
    # aud follows the resource parameter.
    other = idp.access_token(resource="api://other")
    assert verify(idp, other, audience="api://other")["aud"] == "api://other"
    with pytest.raises(jwt.InvalidAudienceError):
        verify(idp, other)
    # A tampered token does not verify.
    parts = token.split(".")
    forged = dict(claims, scope="owner")
    parts[1] = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(idp, ".".join(parts))


def test_rotation_adds_a_new_active_key_and_keeps_the_old_one(idp):
    old_token = idp.access_token()
    old_kid = header(old_token)["kid"]
    new_kid = idp.rotate()
    assert new_kid != old_kid
    kids = [k["kid"] for k in http("GET", idp.jwks_uri)[1]["keys"]]
    assert kids == [new_kid, old_kid]
    new_token = idp.access_token()
    assert header(new_token)["kid"] == new_kid
    assert verify(idp, new_token)["sub"] == CLIENT_ID
    assert verify(idp, old_token)["sub"] == CLIENT_ID
    # Client authentication survives the rebuild.
    assert idp.token(secret="wrong-secret")[0] == 401
