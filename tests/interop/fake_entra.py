"""A strict fake of Entra's token endpoint for federated client assertions (WIRE.md §3), or,
with `client_secret=`, for the `entra` mode's client secret.

It answers a token only to `POST /{tenant}/oauth2/v2.0/token` whose form is exactly
grant_type=client_credentials, client_id, scope, client_assertion, client_assertion_type
(jwt-bearer), with an assertion the test's `check_assertion` accepts — or, in the secret mode,
exactly grant_type=client_credentials, client_id, scope, client_secret with the right secret;
anything else gets an Entra-shaped error. Every request is recorded with the reason it was
refused, if it was."""

import hmac
import secrets
import urllib.parse
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import jwt

from fake_upstream import FakeUpstream, Handler, LoopbackServer, Recorded, send_json

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
FORM_KEYS = {"grant_type", "client_id", "scope", "client_assertion", "client_assertion_type"}
SECRET_FORM_KEYS = {"grant_type", "client_id", "scope", "client_secret"}
EXPIRES_IN = 3599


@dataclass
class EntraRequest:
    method: str
    path: str
    headers: dict  # lower-case names
    body: bytes
    form: dict = field(default_factory=dict)  # name -> [values]
    refused: str | None = None  # why, when it was
    issued: str | None = None  # the access token answered, when one was


class _Refuse(Exception):
    def __init__(self, status, error, description):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        rec = EntraRequest(self.command, self.path,
                           {k.lower(): v for k, v in self.headers.items()}, body)
        try:
            token = self.server.validate(rec)
        except _Refuse as r:
            rec.refused = f"{r.error}: {r.description}"
            self.server.record(rec)
            return self._json(r.status, {
                "error": r.error,
                "error_description": r.description,
                "error_codes": [int(r.description[6:r.description.index(":")])]
                if r.description.startswith("AADSTS") else [],
            })
        rec.issued = token
        self.server.record(rec)
        self._json(200, {"token_type": "Bearer", "expires_in": EXPIRES_IN,
                         "ext_expires_in": EXPIRES_IN, "access_token": token})

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def _json(self, status, obj):
        send_json(self, status, obj, "application/json; charset=utf-8")


class FakeEntra(LoopbackServer):
    def __init__(self, tenant, client_id, check_assertion=None, on_issue=None,
                 scope=COGNITIVE_SCOPE, client_secret=None):
        """check_assertion(jwt) -> None when acceptable, else the reason it is not.
        client_secret: the secret mode instead (no assertion accepted then).
        on_issue(token) is told every access token before it is answered."""
        super().__init__(_Handler)
        if (check_assertion is None) == (client_secret is None):
            raise ValueError("give check_assertion or client_secret, not both")
        self.tenant, self.client_id, self.scope = tenant, client_id, scope
        self.client_secret = client_secret
        self.check_assertion, self.on_issue = check_assertion, on_issue
        self.requests = []
        self.issued = []

    def record(self, rec):
        with self._lock:
            self.requests.append(rec)

    def validate(self, rec):
        if rec.method != "POST" or rec.path != f"/{self.tenant}/oauth2/v2.0/token":
            raise _Refuse(404, "invalid_request",
                          f"AADSTS90002: no token endpoint at {rec.method} {rec.path}")
        ctype = rec.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise _Refuse(400, "invalid_request", f"AADSTS900144: content type {ctype!r}")
        try:
            rec.form = urllib.parse.parse_qs(
                rec.body.decode(), keep_blank_values=True, strict_parsing=True)
        except ValueError as e:
            raise _Refuse(400, "invalid_request", f"AADSTS900144: unreadable form ({e})")
        keys = set(rec.form)
        want_keys = FORM_KEYS if self.client_secret is None else SECRET_FORM_KEYS
        if keys != want_keys:
            raise _Refuse(400, "invalid_request",
                          f"AADSTS900144: form keys {sorted(keys)}, want {sorted(want_keys)}")
        repeated = sorted(k for k, v in rec.form.items() if len(v) != 1)
        if repeated:
            raise _Refuse(400, "invalid_request", f"AADSTS900144: repeated {repeated}")
        form = {k: v[0] for k, v in rec.form.items()}
        want = {"grant_type": "client_credentials", "client_id": self.client_id,
                "scope": self.scope}
        if self.client_secret is None:
            want["client_assertion_type"] = ASSERTION_TYPE
        wrong = sorted(k for k, v in want.items() if form[k] != v)
        if wrong:
            raise _Refuse(400, "invalid_request", f"AADSTS900144: wrong value for {wrong}")
        if self.client_secret is not None:
            if not hmac.compare_digest(form["client_secret"].encode(),
                                       self.client_secret.encode()):
                raise _Refuse(401, "invalid_client",
                              "AADSTS7000215: Invalid client secret provided.")
        else:
            reason = self.check_assertion(form["client_assertion"])
            if reason:
                raise _Refuse(401, "invalid_client",
                              f"AADSTS700211: client assertion refused: {reason}")
        token = "entra-at-" + secrets.token_urlsafe(32)
        if self.on_issue:
            self.on_issue(token)
        with self._lock:
            self.issued.append(token)
        return token

    def accepted(self):
        with self._lock:
            return [r for r in self.requests if r.issued]


def sts_jwt_checker(issued, *, key, issuer, audience, sub):
    """check_assertion for FakeEntra: the assertion must be one of issued() (the tokens STS
    answered), an HS256 JWT signed with key, for audience, from issuer, about sub, unexpired."""
    def check(assertion):
        if assertion not in issued():
            return "not a token STS issued"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ministack's HMAC key is short
                claims = jwt.decode(
                    assertion, key, algorithms=["HS256"], audience=audience, issuer=issuer,
                    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                )
        except jwt.InvalidTokenError as e:
            return f"invalid JWT: {e}"
        if claims["sub"] != sub:
            return f"sub {claims['sub']!r}"
        return None
    return check


class _BearerHandler(Handler):
    def _handle(self):
        if self.headers.get("Authorization") not in self.server.accepted_auth():
            body = self._read_body()
            self.server.record(Recorded(self.command, self.path,
                                        [(k.lower(), v) for k, v in self.headers.items()], body))
            return self._send_json(401, {"error": {"message": "fake upstream: bad credential"}})
        return super()._handle()

    # The base class binds these to its own _handle.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class BearerUpstream(FakeUpstream):
    """The recording fake upstream, answering only `Bearer <a token the fake Entra issued>`
    (401 otherwise, recorded all the same)."""

    def __init__(self, entra):
        super().__init__()
        self.RequestHandlerClass = _BearerHandler
        self.entra = entra

    def accepted_auth(self):
        with self.entra._lock:
            return {f"Bearer {t}" for t in self.entra.issued}
