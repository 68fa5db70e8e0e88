"""entraFederated end to end: AWS credentials → STS GetWebIdentityToken → Entra → upstream.

keyway signs `GetWebIdentityToken` with what the standard AWS chain finds; the STS here is
ministack 1.5.33 with AUTH=true, which checks SigV4 (a wrong secret is refused with
SignatureDoesNotMatch) and IAM policy (`sts:GetWebIdentityToken` must be allowed, so each test
creates an IAM user or role with that policy; the root key test/test is never signature-checked).
Its token is an HS256 JWT signed with a fixed key ("ministack-fake-key", read from
ministack/services/sts.py) with `iss` https://sts.amazonaws.com and `sub` the account root
whoever the caller is. So the fake Entra verifies the signature with that key, checks
aud/iss/sub/exp and that the assertion is byte for byte a token STS answered; which principal
signed is proven instead by the SigV4 credential keyway sent, seen by a recording proxy in
front of ministack. The Entra token is the only credential the fake upstream accepts.

The IRSA leg (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE → AssumeRoleWithWebIdentity), as
found out here: aws-config sends that call to AWS_ENDPOINT_URL_STS, while keyway's
`[aws] sts_endpoint` moves only GetWebIdentityToken. ministack under AUTH=true refuses the
credentials moto issues (InvalidClientTokenId: it does not know them) and moto has no
GetWebIdentityToken (TESTING.md), so the two cannot be chained into a success. Hence:
  * the complete chain runs the IRSA leg against ministack's own AssumeRoleWithWebIdentity,
    which evaluates the role's trust policy against the token's iss/aud/sub (a token with
    another `sub` is refused: also tested), then keyway signs GetWebIdentityToken with the
    session credentials ministack issued;
  * a moto test proves the IRSA leg goes where AWS_ENDPOINT_URL_STS says (moto's own recording
    of the AssumeRoleWithWebIdentity call; moto's auth is off, as TESTING.md requires for that
    unsigned call), that keyway then signs GetWebIdentityToken with exactly the credentials
    moto issued, and that ministack refusing them comes back as a clear error.
"""

import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.exceptions
import jwt
import openai
import pytest

from aws_servers import (
    ACCOUNT, REGION, ROOT_KEYS, RecordingProxy, aws_env, moto_recorded_requests,
    moto_reset_recording, start_ministack, start_moto,
)
from conftest import free_ports
from fake_entra import ASSERTION_TYPE, COGNITIVE_SCOPE, BearerUpstream, FakeEntra, sts_jwt_checker
from fake_upstream import REPLY
from keyway_probe import http, readyz, wait_ready
from sdk_helpers import MESSAGES, SDK_TIMEOUT_S, SentLog, only_request

TENANT = "tenant-1"
CLIENT_ID = "app-1"
AUDIENCE = "api://AzureADTokenExchange"
MINISTACK_JWT_KEY = "ministack-fake-key"
MINISTACK_ISSUER = "https://sts.amazonaws.com"
MINISTACK_SUB = f"arn:aws:iam::{ACCOUNT}:root"
DEPLOYMENT = "gpt-dep"
OIDC_HOST = "oidc.keyway.test/id/cluster1"
SA_SUB = "system:serviceaccount:llm:keyway"
GET_TOKEN_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:GetWebIdentityToken", "Resource": "*"}]})


# --- emulators and fakes ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def aws_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("aws")


def _serve(start, name, workdir):
    for _ in range(3):
        (port,) = free_ports(1)
        try:
            server = start(port, workdir)
        except RuntimeError as e:
            last = e  # most likely the port was taken meanwhile
            continue
        try:
            server.assert_only_own_port()
            yield server
            # Listeners some services open on demand would show up only now.
            server.assert_only_own_port()
        finally:
            server.stop()
        return
    raise last


@pytest.fixture(scope="module")
def ministack(aws_dir):
    yield from _serve(start_ministack, "ministack", aws_dir)


@pytest.fixture(scope="module")
def moto(aws_dir):
    yield from _serve(start_moto, "moto", aws_dir)


def _aws_client(service, url, **keys):
    return boto3.client(service, endpoint_url=url, region_name=REGION, **(keys or ROOT_KEYS))


def _register_answers(registry):
    """Registers every credential an STS answer carries, as the proxy sees it go by."""
    def on_exchange(ex):
        for field in ("WebIdentityToken", "SecretAccessKey", "SessionToken"):
            value = ex.answer(field)
            if value:
                registry.add(value)
    return on_exchange


@pytest.fixture
def sts(ministack, secrets_registry):
    """A recording proxy in front of ministack: what keyway sent STS and what STS answered."""
    proxy = RecordingProxy(ministack.port, _register_answers(secrets_registry)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def moto_sts(moto, secrets_registry):
    moto_reset_recording(moto)
    proxy = RecordingProxy(moto.port, _register_answers(secrets_registry)).start()
    yield proxy
    proxy.stop()


def issued_web_identity_tokens(sts):
    return {e.answer("WebIdentityToken") for e in sts.calls("GetWebIdentityToken") if e.status == 200}


@pytest.fixture
def entra(sts, secrets_registry):
    check = sts_jwt_checker(lambda: issued_web_identity_tokens(sts), key=MINISTACK_JWT_KEY,
                            issuer=MINISTACK_ISSUER, audience=AUDIENCE, sub=MINISTACK_SUB)
    server = FakeEntra(TENANT, CLIENT_ID, check, on_issue=secrets_registry.add).start()
    yield server
    server.stop()


@pytest.fixture
def upstream(entra):
    server = BearerUpstream(entra).start()
    yield server
    server.stop()


# --- helpers -----------------------------------------------------------------------------------




def config(entra, sts_url, upstream, *, route=True):
    body = f"""
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000

[azure]
authority_host = "{entra.url}"

[aws]
region = "{REGION}"
sts_endpoint = "{sts_url}"

[providers.azure-openai]
base_url = "{upstream.url}"
"""
    if route:
        body += f"""
[credentials.aws]
type = "entra_federated"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"

[[routes]]
name = "azure"
path_prefix = "/openai/"
provider = "azure-openai"
upstream = "{upstream.url}"
credential = "aws"
"""
    return body


def create_user(ministack, name, registry):
    """An IAM user allowed sts:GetWebIdentityToken, with an access key (signature-checked,
    unlike the root key)."""
    iam = _aws_client("iam", ministack.url)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="get-web-identity-token",
                        PolicyDocument=GET_TOKEN_POLICY)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    registry.add(key["SecretAccessKey"])
    return key["AccessKeyId"], key["SecretAccessKey"]


def create_irsa_role(iam, name, sub=SA_SUB):
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_HOST}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{OIDC_HOST}:sub": sub,
                                       f"{OIDC_HOST}:aud": "sts.amazonaws.com"}},
    }]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="get-web-identity-token",
                        PolicyDocument=GET_TOKEN_POLICY)
    return arn


def service_account_token(tmp_path, registry, sub=SA_SUB):
    """A projected service-account token as EKS writes it (the STS emulators read its claims;
    neither checks its signature)."""
    now = int(time.time())
    token = jwt.encode({"iss": f"https://{OIDC_HOST}", "sub": sub, "aud": "sts.amazonaws.com",
                        "iat": now, "exp": now + 3600},
                       secrets.token_hex(32), algorithm="HS256")
    registry.add(token)
    path = tmp_path / "sa-token"
    path.write_text(token)
    return path


def audiences(params):
    if isinstance(params.get("Audience"), list):
        return params["Audience"]
    return [v for k, v in sorted(params.items()) if k.startswith("Audience.member.")]


def assert_signed_get_token(call, access_key_id, session_token=None):
    """One GetWebIdentityToken as ministack received it: SigV4 with that key, the contract's
    parameters."""
    auth = call.headers.get("authorization", "")
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={access_key_id}/"), auth
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
    assert scope.endswith(f"/{REGION}/sts/aws4_request"), scope
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    assert {"host", "x-amz-date"} <= set(signed), signed
    assert "x-amz-date" in call.headers
    if session_token:
        assert call.headers.get("x-amz-security-token") == session_token
        assert "x-amz-security-token" in signed
    else:
        assert "x-amz-security-token" not in call.headers
    params = call.params()
    assert audiences(params) == [AUDIENCE], params
    assert params.get("SigningAlgorithm") == "RS256", params
    assert call.status == 200, call.response[:500]


def assert_chain(sts, entra, upstream, key_id, session_token=None):
    """Every hop of a successful chain: signed STS call, its JWT at Entra, Entra's token upstream."""
    calls = sts.calls("GetWebIdentityToken")
    assert calls, [e.action() for e in sts.exchanges]
    for call in calls:
        assert_signed_get_token(call, key_id, session_token)
    jwts = issued_web_identity_tokens(sts)

    assert entra.requests, "keyway never asked Entra"
    refused = [r.refused for r in entra.requests if r.refused]
    assert refused == [], refused
    for r in entra.requests:
        form = {k: v[0] for k, v in r.form.items()}
        assert form["client_assertion"] in jwts
        assert (form["grant_type"], form["client_id"], form["scope"], form["client_assertion_type"]) == (
            "client_credentials", CLIENT_ID, COGNITIVE_SCOPE, ASSERTION_TYPE)

    got = only_request(upstream)
    assert got.header("authorization") in ([f"Bearer {t}"] for t in entra.issued), got.headers
    assert got.header("api-key") == []
    for secret in jwts:
        assert all(secret not in v for _, v in got.headers), "the STS JWT reached the upstream"
    return got


def assert_clean_error(status, body, codes, *secret_values):
    """A JSON error naming entraFederated and one of the AWS codes, no credential in it."""
    assert status in (401, 502), (status, body)
    doc = json.loads(body)
    text = json.dumps(doc)
    assert "entraFederated" in text, doc
    assert any(c in text for c in codes), (codes, doc)
    for s in secret_values:
        assert s not in text


CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}


def chat_via_route(keyway):
    return http("POST", f"{keyway.url}/openai/deployments/{DEPLOYMENT}/chat/completions"
                        "?api-version=2024-10-21", CHAT, {"api-key": "client-placeholder"})


def chat_via_headers(keyway):
    return http("POST", f"{keyway.url}/v1/chat/completions", CHAT, {
        "x-portkey-provider": "azure-openai",
        "x-portkey-azure-auth-mode": "entraFederated",
        "x-portkey-azure-entra-tenant-id": TENANT,
        "x-portkey-azure-entra-client-id": CLIENT_ID,
        "x-portkey-azure-resource-name": "my-resource",
        "x-portkey-azure-deployment-id": DEPLOYMENT,
    })


# --- tests -----------------------------------------------------------------------------------

def test_ministack_checks_what_these_tests_rely_on(ministack, secrets_registry):
    """No keyway: boto3 against ministack. Should an upgrade drop a check, the keyway tests
    below would prove less than they claim."""
    key_id, secret = create_user(ministack, "kw-boto3", secrets_registry)
    user = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    answer = _aws_client("sts", ministack.url, **user).get_web_identity_token(
        Audience=[AUDIENCE], SigningAlgorithm="RS256")
    token = secrets_registry.add(answer["WebIdentityToken"])
    check = sts_jwt_checker(lambda: {token}, key=MINISTACK_JWT_KEY, issuer=MINISTACK_ISSUER,
                            audience=AUDIENCE, sub=MINISTACK_SUB)
    assert check(token) is None

    wrong = secrets_registry.add("W" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as bad_sig:
        _aws_client("sts", ministack.url, aws_access_key_id=key_id,
                    aws_secret_access_key=wrong).get_web_identity_token(
            Audience=[AUDIENCE], SigningAlgorithm="RS256")
    assert bad_sig.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    iam = _aws_client("iam", ministack.url)
    iam.create_user(UserName="kw-no-policy")
    bare = iam.create_access_key(UserName="kw-no-policy")["AccessKey"]
    secrets_registry.add(bare["SecretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        _aws_client("sts", ministack.url, aws_access_key_id=bare["AccessKeyId"],
                    aws_secret_access_key=bare["SecretAccessKey"]).get_web_identity_token(
            Audience=[AUDIENCE], SigningAlgorithm="RS256")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"



def test_static_keys_chain_with_azure_sdk(start_keyway, ministack, sts, entra, upstream,
                                           secrets_registry, tmp_path):
    key_id, secret = create_user(ministack, "kw-static", secrets_registry)
    keyway = start_keyway(config(entra, sts.url, upstream), aws_env(
        tmp_path, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret))
    wait_ready(keyway)

    sent = SentLog()
    client = openai.AzureOpenAI(
        azure_endpoint=keyway.url, api_key="client-placeholder", api_version="2024-10-21",
        http_client=sent.client(), max_retries=0, timeout=SDK_TIMEOUT_S,
    )
    resp = client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)

    assert resp.choices[0].message.content == REPLY
    got = assert_chain(sts, entra, upstream, key_id)
    assert got.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"
    assert got.json() == json.loads(sent.only().content)
    assert "client-placeholder" not in json.dumps(got.headers)


def test_static_keys_chain_per_request_headers(start_keyway, ministack, sts, entra, upstream,
                                               secrets_registry, tmp_path):
    key_id, secret = create_user(ministack, "kw-headers", secrets_registry)
    keyway = start_keyway(config(entra, sts.url, upstream, route=False), aws_env(
        tmp_path, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret))

    status, _, body = chat_via_headers(keyway)

    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == REPLY
    got = assert_chain(sts, entra, upstream, key_id)
    assert got.path.startswith(f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version="), got.path
    assert [k for k, _ in got.headers if k.startswith("x-portkey-")] == []
    assert got.json() == CHAT


@pytest.mark.parametrize("via", ["route", "headers"])
def test_wrong_secret_key_is_a_clear_error(start_keyway, ministack, sts, entra, upstream,
                                           secrets_registry, tmp_path, via):
    key_id, _ = create_user(ministack, f"kw-wrong-{via}", secrets_registry)
    wrong = secrets_registry.add(secrets.token_urlsafe(30)[:40])
    keyway = start_keyway(config(entra, sts.url, upstream, route=via == "route"), aws_env(
        tmp_path, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=wrong))

    status, _, body = (chat_via_route if via == "route" else chat_via_headers)(keyway)

    calls = sts.calls("GetWebIdentityToken")
    assert calls and all(c.status in (400, 403) for c in calls), [(c.status, c.response) for c in calls]
    codes = {c.answer("Code") for c in calls}
    assert codes <= {"SignatureDoesNotMatch", "InvalidSignatureException"}, codes
    assert_clean_error(status, body, codes, wrong)
    assert entra.requests == []
    assert upstream.requests == []
    if via == "route":
        assert readyz(keyway) != 200


def test_irsa_chain_against_ministack(start_keyway, ministack, sts, entra, upstream,
                                      secrets_registry, tmp_path):
    role_arn = create_irsa_role(_aws_client("iam", ministack.url), "kw-irsa")
    token_file = service_account_token(tmp_path, secrets_registry)
    keyway = start_keyway(config(entra, sts.url, upstream), aws_env(
        tmp_path, AWS_ROLE_ARN=role_arn, AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_SESSION_NAME="keyway-irsa", AWS_ENDPOINT_URL_STS=sts.url))
    wait_ready(keyway)

    status, _, body = chat_via_route(keyway)

    assert status == 200, body
    assume = sts.calls("AssumeRoleWithWebIdentity")
    assert assume, [e.action() for e in sts.exchanges]
    for call in assume:
        params = call.params()
        assert params["RoleArn"] == role_arn
        assert params["WebIdentityToken"] == token_file.read_text()
        assert "authorization" not in call.headers  # an unsigned call by design
        assert call.status == 200, call.response
    issued = assume[-1]
    assert_chain(sts, entra, upstream, issued.answer("AccessKeyId"), issued.answer("SessionToken"))


def test_irsa_token_the_trust_policy_refuses(start_keyway, ministack, sts, entra, upstream,
                                             secrets_registry, tmp_path):
    role_arn = create_irsa_role(_aws_client("iam", ministack.url), "kw-irsa-other")
    token_file = service_account_token(tmp_path, secrets_registry, sub="system:serviceaccount:x:y")
    keyway = start_keyway(config(entra, sts.url, upstream), aws_env(
        tmp_path, AWS_ROLE_ARN=role_arn, AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ENDPOINT_URL_STS=sts.url))

    status, _, body = chat_via_route(keyway)

    assume = sts.calls("AssumeRoleWithWebIdentity")
    assert assume and all(c.status == 403 for c in assume), [(c.status, c.response) for c in assume]
    assert sts.calls("GetWebIdentityToken") == []
    assert_clean_error(status, body, {"AccessDenied"}, token_file.read_text())
    assert entra.requests == []
    assert upstream.requests == []


def test_irsa_leg_goes_to_aws_endpoint_url_sts_moto(start_keyway, moto, moto_sts, sts, entra,
                                                   upstream, secrets_registry, tmp_path):
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/kw-irsa-moto"
    token_file = service_account_token(tmp_path, secrets_registry)
    keyway = start_keyway(config(entra, sts.url, upstream), aws_env(
        tmp_path, AWS_ROLE_ARN=role_arn, AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_SESSION_NAME="keyway-moto", AWS_ENDPOINT_URL_STS=moto_sts.url))

    status, _, body = chat_via_route(keyway)

    # moto's own record: the IRSA leg reached it, with our role and token.
    recorded = [r for r in moto_recorded_requests(moto) if "AssumeRoleWithWebIdentity" in r["body"]]
    assert recorded, moto_recorded_requests(moto)
    for r in recorded:
        form = dict(urllib.parse.parse_qsl(r["body"]))
        assert form["RoleArn"] == role_arn
        assert form["WebIdentityToken"] == token_file.read_text()
    issued = [e for e in moto_sts.calls("AssumeRoleWithWebIdentity") if e.status == 200]
    assert issued, [(e.status, e.response[:300]) for e in moto_sts.exchanges]

    # keyway then signed GetWebIdentityToken with moto's session credentials, at ministack,
    # which does not know them.
    calls = sts.calls("GetWebIdentityToken")
    assert calls, [e.action() for e in sts.exchanges]
    moto_keys = {e.answer("AccessKeyId"): e.answer("SessionToken") for e in issued}
    for call in calls:
        key_id = call.headers["authorization"].split("Credential=", 1)[1].split("/", 1)[0]
        assert key_id in moto_keys
        assert call.headers.get("x-amz-security-token") == moto_keys[key_id]
        assert call.status in (400, 403), call.response[:500]
    codes = {c.answer("Code") for c in calls}
    assert_clean_error(status, body, codes, token_file.read_text())
    assert entra.requests == []
    assert upstream.requests == []

