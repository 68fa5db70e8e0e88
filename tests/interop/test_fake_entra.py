"""The fake Entra and the Bearer-only upstream on their own (no keyway): a lenient fake would
let a keyway bug pass."""

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest

from fake_entra import ASSERTION_TYPE, COGNITIVE_SCOPE, BearerUpstream, FakeEntra, sts_jwt_checker

KEY = "k" * 32
ISS, AUD, SUB = "https://sts.example", "api://AzureADTokenExchange", "arn:aws:iam::1:root"


def make_jwt(**over):
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": SUB, "iat": now, "exp": now + 300, **over}
    key = claims.pop("_key", KEY)
    return jwt.encode(claims, key, algorithm="HS256")


GOOD = make_jwt()
ISSUED = {GOOD}


@pytest.fixture
def entra():
    check = sts_jwt_checker(lambda: ISSUED, key=KEY, issuer=ISS, audience=AUD, sub=SUB)
    server = FakeEntra("t1", "c1", check).start()
    yield server
    server.stop()


def post(url, form, ctype="application/x-www-form-urlencoded", path="/t1/oauth2/v2.0/token"):
    data = urllib.parse.urlencode(form).encode() if isinstance(form, dict) else form
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": ctype})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def good_form(**over):
    form = {"grant_type": "client_credentials", "client_id": "c1", "scope": COGNITIVE_SCOPE,
            "client_assertion": GOOD, "client_assertion_type": ASSERTION_TYPE, **over}
    return {k: v for k, v in form.items() if v is not None}


def test_exact_form_gets_a_token(entra):
    status, body = post(entra.url, good_form())
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert entra.issued == [body["access_token"]]
    assert entra.accepted()[0].form["client_assertion"] == [GOOD]


@pytest.mark.parametrize("form, why", [
    (good_form(client_assertion_type=None), "form keys"),
    (good_form(client_secret="s"), "form keys"),
    (good_form(grant_type="password"), "grant_type"),
    (good_form(client_id="other"), "client_id"),
    (good_form(scope="https://vault.azure.net/.default"), "scope"),
    (good_form(client_assertion_type="urn:other"), "client_assertion_type"),
    (good_form(client_assertion=make_jwt(jti="x")), "not a token STS issued"),
    (urllib.parse.urlencode(good_form()).encode() + b"&scope=x", "repeated"),
])
def test_refuses_anything_else(entra, form, why):
    status, body = post(entra.url, form)
    assert status in (400, 401) and body["error"] in ("invalid_request", "invalid_client")
    assert why in entra.requests[0].refused
    assert entra.issued == []


@pytest.mark.parametrize("claims, why", [
    ({"_key": "another-key-another-key-another-k"}, "Signature"),
    ({"aud": "api://other"}, "Audience"),
    ({"iss": "https://evil"}, "issuer"),
    ({"sub": "arn:aws:iam::1:user/x"}, "sub"),
    ({"exp": int(time.time()) - 60}, "expired"),
])
def test_refuses_a_bad_jwt_even_if_issued(entra, claims, why):
    bad = make_jwt(**claims)
    ISSUED.add(bad)
    try:
        status, _ = post(entra.url, good_form(client_assertion=bad))
    finally:
        ISSUED.discard(bad)
    assert status == 401
    assert why in entra.requests[0].refused, entra.requests[0].refused


def test_refuses_wrong_tenant_and_content_type(entra):
    assert post(entra.url, good_form(), path="/other/oauth2/v2.0/token")[0] == 404
    assert post(entra.url, json.dumps(good_form()).encode(), ctype="application/json")[0] == 400
    assert entra.issued == []


def test_bearer_upstream_takes_only_issued_tokens(entra):
    upstream = BearerUpstream(entra).start()
    try:
        token = post(entra.url, good_form())[1]["access_token"]
        chat = json.dumps({"model": "m", "messages": []}).encode()
        results = []
        for auth in (None, "Bearer nope", f"Bearer {token}"):
            req = urllib.request.Request(f"{upstream.url}/v1/chat/completions", data=chat,
                                         headers={"Authorization": auth} if auth else {})
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
                    results.append(r.status)
            except urllib.error.HTTPError as e:
                results.append(e.code)
        assert results == [401, 401, 200]
        assert [r.header("authorization") for r in upstream.requests] == [
            [], ["Bearer nope"], [f"Bearer {token}"]]
    finally:
        upstream.stop()
