"""Secret references in AWS Secrets Manager, end to end: keyway signs GetSecretValue (accessKey
keys, or a role it assumes through STS from its ambient AWS chain) and puts the secret on the
upstream request.

AWS is moto 5.2.5 (`moto_server`) with request authentication switched on
(`POST /moto-api/reset-auth` with body `0`): it then checks SigV4 signatures and evaluates the
caller's IAM identity policies and, on AssumeRole, the role's trust policy. Everything is set up
while auth is still off, plus an admin IAM user (Action "*") for changes made afterwards: with
auth on, the root key test/test is refused (InvalidClientTokenId). A recording proxy in front of
moto shows what keyway signed and sent, and what moto answered.

The refusal tests run against ministack 1.5.33 (AUTH=true, Secrets Manager enabled) as well:
it answers authentication and authorization failures as AWS does on a JSON-protocol service
(`InvalidSignatureException` 400, `AccessDeniedException` 403, JSON body and X-Amzn-ErrorType),
which is what keyway's AWS SDK parses; moto's XML shape of those errors (below) it cannot.

Where moto differs from AWS, as found here:
  * moto's account is 123456789012 (read back from GetCallerIdentity, not assumed);
  * its authorization errors on JSON-protocol services such as Secrets Manager are XML
    (`<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code>`, Content-Type text/html,
    no X-Amzn-ErrorType header), where AWS answers JSON with `__type` and the header
    (`InvalidSignatureException`, `UnrecognizedClientException`, `AccessDeniedException`);
    service errors such as ResourceNotFoundException are JSON with the header, as on AWS, but
    with HTTP 404 where AWS (and ministack) answer 400;
  * identity policies only work with `"Resource": "*"`: a policy naming the secret's ARN is
    refused (AccessDenied), so the policies here allow the action on every resource;
  * a trust policy condition on sts:ExternalId is enforced when an ExternalId is sent (a wrong
    one is refused) but not when none is sent, which AWS would refuse.
"""

import json
import re
import secrets
import urllib.request

import boto3
import botocore.exceptions
import pytest

from aws_servers import REGION, RecordingProxy, _base_env, _start, aws_env, start_moto, venv_bin
from conftest import free_ports
from fake_upstream import REPLY
# The keyway-side helpers and the fake upstream (which also answers Anthropic's /v1/messages)
# are the Vault tests' own.
from keyway_probe import metric, readyz, wait_ready
from test_secrets_vault import (
    TIMEOUTS, Upstream, anthropic_route, chat_openai, messages_anthropic, openai_default,
)
EXTERNAL_ID = "kw-external-id-1"


def allow(*actions):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


# --- moto --------------------------------------------------------------------------------------

def _post(url, body):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
        assert r.status == 200, r.read()


class Emulator:
    """IAM users and secrets, made through `self.iam` and `self.sm`."""

    def client(self, service, keys):
        return boto3.client(service, endpoint_url=self.server.url, region_name=REGION, **keys)

    def user(self, name, policy):
        self.iam.create_user(UserName=name)
        self.iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=policy)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        self.registry.add(key["SecretAccessKey"])
        return {"aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"]}

    def put(self, name, value):
        """Creates or updates secret `name` (a dict is stored as JSON)."""
        text = json.dumps(value) if isinstance(value, dict) else value
        try:
            self.sm.create_secret(Name=name, SecretString=text)
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "ResourceExistsException":
                raise
            self.sm.put_secret_value(SecretId=name, SecretString=text)


class Moto(Emulator):
    """moto with auth on, and the IAM principals the tests use (created while auth was off)."""

    def __init__(self, server, registry):
        self.server, self.registry = server, registry
        root = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        self.iam = self.client("iam", root)
        self.account = self.client("sts", root).get_caller_identity()["Account"]
        self.admin = self.user("kw-admin", allow("*"))
        self.reader = self.user("kw-reader", allow("secretsmanager:GetSecretValue"))
        self.stranger = self.user("kw-stranger", allow("sts:GetCallerIdentity"))
        self.assumer = self.user("kw-assumer", allow("sts:AssumeRole"))
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{self.account}:user/kw-assumer"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
        }]}
        self.role_arn = self.iam.create_role(
            RoleName="kw-secret-reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        self.iam.put_role_policy(RoleName="kw-secret-reader", PolicyName="read-secrets",
                                 PolicyDocument=allow("secretsmanager:GetSecretValue"))
        _post(f"{server.url}/moto-api/reset-auth", b"0")  # from now on: SigV4 and IAM enforced
        self.iam = self.client("iam", self.admin)
        self.sm = self.client("secretsmanager", self.admin)


class Ministack(Emulator):
    """ministack with AUTH=true and Secrets Manager: AWS's own error shapes for a JSON-protocol
    service (see the module docstring). Its root key test/test is never signature-checked, so
    it sets up IAM and secrets at any time."""

    def __init__(self, server, registry):
        self.server, self.registry = server, registry
        root = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        self.iam, self.sm = self.client("iam", root), self.client("secretsmanager", root)
        self.reader = self.user("kw-reader", allow("secretsmanager:GetSecretValue"))
        self.stranger = self.user("kw-stranger", allow("sts:GetCallerIdentity"))


def start_ministack_sm(port, workdir):
    """aws_servers.start_ministack with Secrets Manager among the services."""
    env = _base_env(workdir)
    env.update(AUTH="true", BIND_HOST="127.0.0.1", GATEWAY_PORT=str(port), IOT_MTLS_ENABLED="0",
               SFTP_ENABLED="0", USE_SSL="0", PERSIST_STATE="0", SERVICES="sts,iam,secretsmanager",
               S3_DATA_DIR=str(workdir / "s3"), LOG_LEVEL="INFO")
    return _start("ministack", [str(venv_bin("ministack"))], env, port, "/_ministack/ready", workdir)


def _serve(start, emulator, workdir, registry):
    last = None
    for _ in range(3):
        (port,) = free_ports(1)
        try:
            server = start(port, workdir)
            break
        except RuntimeError as e:
            last = e  # most likely the port was taken meanwhile
    else:
        raise last
    try:
        server.assert_only_own_port()
        yield emulator(server, registry)
        server.assert_only_own_port()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aws(tmp_path_factory, secrets_registry):
    yield from _serve(start_moto, Moto, tmp_path_factory.mktemp("moto-secrets"), secrets_registry)


@pytest.fixture(scope="module")
def ministack_sm(tmp_path_factory, secrets_registry):
    yield from _serve(start_ministack_sm, Ministack, tmp_path_factory.mktemp("ministack-secrets"),
                      secrets_registry)


def recording_proxy(server, registry):
    """What keyway sent the emulator (STS and Secrets Manager) and what it answered;
    credentials in the answers are registered for the log scan as they go by."""
    def on_exchange(ex):
        for field in ("SecretAccessKey", "SessionToken", "SecretString"):
            value = ex.answer(field)
            if isinstance(value, str) and value and "\n" not in value:
                registry.add(value)
    return RecordingProxy(server.port, on_exchange).start()


@pytest.fixture
def moto_proxy(aws, secrets_registry):
    proxy = recording_proxy(aws.server, secrets_registry)
    yield proxy
    proxy.stop()


@pytest.fixture
def upstream():
    server = Upstream().start()
    yield server
    server.stop()


# --- helpers -------------------------------------------------------------------------------------




def new_secret(registry, prefix="sk-aws-"):
    return registry.add(prefix + secrets.token_urlsafe(24))


def reference(slug, path, auth_lines, secret_key=None):
    lines = ["[[secret_references]]", f'name = "AWS secret {slug}"', f'slug = "{slug}"',
             'manager_type = "aws_sm"', f'secret_path = "{path}"']
    if secret_key:
        lines.append(f'secret_key = "{secret_key}"')
    return "\n".join(lines + ["[secret_references.auth_config]", auth_lines.strip(), ""])


def access_key_auth(keys):
    return (f'aws_auth_type = "accessKey"\naws_region = "{REGION}"\n'
            f'aws_access_key_id = "{keys["aws_access_key_id"]}"\n'
            f'aws_secret_access_key = "{keys["aws_secret_access_key"]}"')


def sm_endpoint(proxy):
    return f'\n[aws]\nregion = "{REGION}"\nsecretsmanager_endpoint = "{proxy.url}"\n'


def signer(exchange):
    """The access key id an exchange was signed with."""
    auth = exchange.headers.get("authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request", auth)
    assert m, auth
    return m.groups()  # (key id, region, service)


def get_secret_calls(proxy):
    return proxy.calls("GetSecretValue")


def error_code(exchange):
    """The AWS error code of an answer, XML (moto's auth errors) or JSON."""
    code = exchange.answer("Code")
    if code:
        return code
    t = exchange.answer("__type") or ""
    return t.rsplit("#", 1)[-1] or None


# --- the emulator itself -----------------------------------------------------------------------

def test_moto_enforces_what_these_tests_rely_on(aws, secrets_registry):
    """No keyway: boto3 against moto with auth on."""
    value = new_secret(secrets_registry)
    aws.put("emu/plain", value)
    reader = aws.client("secretsmanager", aws.reader)
    assert reader.get_secret_value(SecretId="emu/plain")["SecretString"] == value

    wrong = dict(aws.reader, aws_secret_access_key=secrets_registry.add("W" * 40))
    with pytest.raises(botocore.exceptions.ClientError) as bad_sig:
        aws.client("secretsmanager", wrong).get_secret_value(SecretId="emu/plain")
    assert "SignatureDoesNotMatch" in str(bad_sig.value.response["Error"])  # XML, see docstring

    with pytest.raises(botocore.exceptions.ClientError) as denied:
        aws.client("secretsmanager", aws.stranger).get_secret_value(SecretId="emu/plain")
    assert "AccessDenied" in str(denied.value.response["Error"])

    with pytest.raises(botocore.exceptions.ClientError) as root:
        aws.client("secretsmanager", {"aws_access_key_id": "test",
                                      "aws_secret_access_key": "test"}).get_secret_value(SecretId="emu/plain")
    assert "InvalidClientTokenId" in str(root.value.response["Error"])

    sts = aws.client("sts", aws.assumer)
    creds = sts.assume_role(RoleArn=aws.role_arn, RoleSessionName="emu",
                            ExternalId=EXTERNAL_ID)["Credentials"]
    secrets_registry.add(creds["SecretAccessKey"])
    secrets_registry.add(creds["SessionToken"])
    role = aws.client("secretsmanager", {"aws_access_key_id": creds["AccessKeyId"],
                                         "aws_secret_access_key": creds["SecretAccessKey"],
                                         "aws_session_token": creds["SessionToken"]})
    assert role.get_secret_value(SecretId="emu/plain")["SecretString"] == value
    with pytest.raises(botocore.exceptions.ClientError) as trust:
        sts.assume_role(RoleArn=aws.role_arn, RoleSessionName="emu", ExternalId="another-id")
    assert trust.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as no_sts:
        aws.client("sts", aws.reader).assume_role(RoleArn=aws.role_arn, RoleSessionName="emu",
                                                  ExternalId=EXTERNAL_ID)
    assert no_sts.value.response["Error"]["Code"] == "AccessDenied"


# --- keyway ------------------------------------------------------------------------------------

def test_access_key_plain_and_json_secret(start_keyway, aws, moto_proxy, upstream,
                                          secrets_registry, tmp_path):
    """(a) accessKey with an IAM user's key: a plain SecretString as the OpenAI default key, and
    one key (secret_key) of a JSON SecretString behind an Anthropic front-door route."""
    openai_key, anthropic_key = new_secret(secrets_registry), new_secret(secrets_registry)
    other = new_secret(secrets_registry, "other-")
    aws.put("kw/openai", openai_key)
    aws.put("kw/anthropic.json", {"api_key": anthropic_key, "other": other})
    auth = access_key_auth(aws.reader)
    keyway = start_keyway(TIMEOUTS + sm_endpoint(moto_proxy) + "\n".join([
        reference("openai-aws", "kw/openai", auth),
        reference("anthropic-aws", "kw/anthropic.json", auth, secret_key="api_key"),
        openai_default(upstream, "openai-aws"),
        anthropic_route(upstream, "anthropic-aws", credential="anthropic-aws"),
    ]), aws_env(tmp_path))
    wait_ready(keyway)

    status, _, body = chat_openai(keyway)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == REPLY
    got = upstream.requests[-1]
    assert got.header("authorization") == [f"Bearer {openai_key}"]

    status, _, body = messages_anthropic(keyway)
    assert status == 200, body
    got = upstream.requests[-1]
    assert (got.path, got.header("x-api-key"), got.header("authorization")) == (
        "/v1/messages", [anthropic_key], [])
    assert other not in json.dumps(got.headers)

    calls = get_secret_calls(moto_proxy)
    assert {c.params()["SecretId"] for c in calls} == {"kw/openai", "kw/anthropic.json"}
    for call in calls:
        assert signer(call) == (aws.reader["aws_access_key_id"], REGION, "secretsmanager")
        assert "x-amz-security-token" not in call.headers
        assert call.status == 200, call.response[:300]
    assert metric(keyway, "keyway_secret_fetches_total", manager="aws_sm", outcome="ok") >= 2


def test_assumed_role_from_the_ambient_chain(start_keyway, aws, moto_proxy, upstream,
                                             secrets_registry, tmp_path):
    """(b) assumedRole: keyway's ambient AWS credentials (env keys of an IAM user that may only
    sts:AssumeRole) assume a role that may read the secret; STS and Secrets Manager are reached
    through AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_SECRETSMANAGER (no [aws] endpoints)."""
    key = new_secret(secrets_registry)
    aws.put("kw/assumed", {"api_key": key})
    auth = (f'aws_auth_type = "assumedRole"\naws_region = "{REGION}"\n'
            f'aws_role_arn = "{aws.role_arn}"\naws_external_id = "{EXTERNAL_ID}"')
    keyway = start_keyway(TIMEOUTS + "\n".join([
        reference("openai-assumed", "kw/assumed", auth, secret_key="api_key"),
        openai_default(upstream, "openai-assumed"),
    ]), aws_env(tmp_path, AWS_ACCESS_KEY_ID=aws.assumer["aws_access_key_id"],
                AWS_SECRET_ACCESS_KEY=aws.assumer["aws_secret_access_key"],
                AWS_ENDPOINT_URL_STS=moto_proxy.url,
                AWS_ENDPOINT_URL_SECRETSMANAGER=moto_proxy.url))
    wait_ready(keyway)

    status, _, body = chat_openai(keyway)

    assert status == 200, body
    assert upstream.requests[-1].header("authorization") == [f"Bearer {key}"]
    assumes = moto_proxy.calls("AssumeRole")
    assert assumes, [(e.method, e.action()) for e in moto_proxy.exchanges]
    for call in assumes:
        assert signer(call) == (aws.assumer["aws_access_key_id"], REGION, "sts")
        params = call.params()
        assert (params["RoleArn"], params.get("ExternalId")) == (aws.role_arn, EXTERNAL_ID)
        assert call.status == 200, call.response[:300]
    issued = {e.answer("AccessKeyId"): e.answer("SessionToken") for e in assumes}
    reads = get_secret_calls(moto_proxy)
    assert reads
    for call in reads:
        key_id, region, service = signer(call)
        assert key_id in issued and (region, service) == (REGION, "secretsmanager")
        assert call.headers.get("x-amz-security-token") == issued[key_id]
        assert call.status == 200, call.response[:300]


# The error code each emulator answers (read from the answer by the recording proxy). moto's
# authorization errors are XML on this JSON service, which the AWS SDK cannot parse; keyway then
# reads the <Code> from the body itself, so every case names the code.
REFUSALS = {
    ("moto", "wrong secret key"): "SignatureDoesNotMatch",
    ("moto", "not allowed"): "AccessDenied",
    ("moto", "missing secret"): "ResourceNotFoundException",
    ("ministack", "wrong secret key"): "InvalidSignatureException",
    ("ministack", "not allowed"): "AccessDeniedException",
    ("ministack", "missing secret"): "ResourceNotFoundException",
}


@pytest.mark.parametrize("emulator,case", sorted(REFUSALS))
def test_refused_fetch_is_503_naming_the_reference(start_keyway, request, upstream,
                                                   secrets_registry, tmp_path, emulator, case):
    """(c) keyway never got the value: 503 JSON naming the slug and neither key; the upstream is
    not called; /readyz stays 503; keyway's log names the reference and the AWS error code
    and the HTTP status."""
    aws = request.getfixturevalue("aws" if emulator == "moto" else "ministack_sm")
    proxy = recording_proxy(aws.server, secrets_registry)
    request.addfinalizer(proxy.stop)
    aws.put("kw/refused", new_secret(secrets_registry))
    keys, path = aws.reader, "kw/refused"
    if case == "wrong secret key":
        keys = dict(keys, aws_secret_access_key=secrets_registry.add(secrets.token_urlsafe(30)))
    elif case == "not allowed":
        keys = aws.stranger
    else:
        path = "kw/absent"
    keyway = start_keyway(TIMEOUTS + sm_endpoint(proxy) + "\n".join([
        reference("openai-refused", path, access_key_auth(keys)),
        openai_default(upstream, "openai-refused"),
    ]), aws_env(tmp_path))

    status, _, body = chat_openai(keyway)

    assert status == 503, (status, body)
    text = body.decode(errors="replace")
    err = json.loads(body)["error"]
    assert (err["type"], err["code"]) == ("secret_unavailable", "secret_unavailable"), err
    assert "secret reference 'openai-refused' is unavailable" in err["message"], err
    assert keys["aws_access_key_id"] not in text and keys["aws_secret_access_key"] not in text
    assert upstream.requests == []
    assert readyz(keyway) != 200

    calls = get_secret_calls(proxy)
    assert calls and all(c.status in (400, 403, 404) for c in calls), \
        [(c.status, c.response[:200]) for c in calls]
    expected = REFUSALS[(emulator, case)]
    assert {error_code(c) for c in calls} == {expected}
    log = keyway.log_text()
    needle = f"HTTP {calls[0].status}, {expected}"
    lines = [line for line in log.splitlines() if "openai-refused" in line and needle in line]
    assert lines, f"no log line names both the reference and {needle}:\n{log[-3000:]}"
    outcome = "not_found" if case == "missing secret" else "rejected"
    assert metric(keyway, "keyway_secret_fetches_total", manager="aws_sm", outcome=outcome) >= 1
