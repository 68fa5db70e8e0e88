"""The real OpenAI and Portkey SDKs through keyway to a recording fake upstream."""

import openai
import pytest
from portkey_ai import Portkey

from fake_upstream import REPLY, STREAM_PIECES
from sdk_helpers import (
    MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog, assert_forwarded, only_request, stream_pieces,
)

TIMEOUTS = """
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
"""
CUSTOM_HOST = 'trusted_custom_hosts = ["127.0.0.1"]\n' + TIMEOUTS


@pytest.fixture
def sent():
    return SentLog()


@pytest.fixture(autouse=True)
def _register_client_keys(secrets_registry):
    # Keys the SDKs send in headers: the end-of-run scan checks no log carries them.
    for key in ("sk-client-key", "sk-provider-key", "client-placeholder"):
        secrets_registry.add(key)


def openai_via_custom_host(keyway, upstream, sent):
    return openai.OpenAI(
        base_url=f"{keyway.url}/v1",
        api_key="sk-client-key",
        default_headers={
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"{upstream.url}/v1",
        },
        http_client=sent.client(),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )


def test_openai_sdk_custom_host_chat(start_keyway, upstream, sent):
    client = openai_via_custom_host(start_keyway(CUSTOM_HOST), upstream, sent)
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert resp.choices[0].message.content == REPLY
    assert_forwarded(
        only_request(upstream), sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value="Bearer sk-client-key",
    )


def test_openai_sdk_custom_host_stream(start_keyway, upstream, sent):
    client = openai_via_custom_host(start_keyway(CUSTOM_HOST), upstream, sent)
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        assert stream_pieces(stream) == STREAM_PIECES

    got = only_request(upstream)
    assert got.json()["stream"] is True
    assert_forwarded(
        got, sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value="Bearer sk-client-key",
    )


def test_openai_sdk_configured_base_url_client_key_wins(start_keyway, upstream, sent):
    keyway = start_keyway(
        TIMEOUTS + f'\n[providers.openai]\nbase_url = "{upstream.url}/v1"\napi_key = "sk-config-key"\n'
    )
    client = openai.OpenAI(
        base_url=f"{keyway.url}/v1",
        api_key="unused",
        default_headers={"x-portkey-provider": "openai"},
        http_client=sent.client(),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert resp.choices[0].message.content == REPLY
    assert_forwarded(
        only_request(upstream), sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value="Bearer unused", absent=["sk-config-key"],
    )


def test_azure_sdk_front_door_route_uses_config_credential(start_keyway, upstream, sent):
    keyway = start_keyway(TIMEOUTS + f"""
[credentials.azure-static]
type = "api_key"
key = "azure-static-key"

[[routes]]
name = "azure"
path_prefix = "/openai/"
provider = "azure-openai"
upstream = "{upstream.url}"
credential = "azure-static"
""")
    client = openai.AzureOpenAI(
        azure_endpoint=keyway.url,
        api_key="client-placeholder",
        api_version="2024-10-21",
        http_client=sent.client(),
        max_retries=0,
        timeout=SDK_TIMEOUT_S,
    )
    resp = client.chat.completions.create(model="my-deployment", messages=MESSAGES)

    assert resp.choices[0].message.content == REPLY
    assert_forwarded(
        only_request(upstream), sent.only(),
        path="/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21",
        auth_header="api-key", auth_value="azure-static-key", absent=["client-placeholder"],
    )


def portkey_client(keyway, upstream, sent):
    return Portkey(
        base_url=f"{keyway.url}/v1",
        api_key="sk-provider-key",
        provider="openai",
        custom_host=f"{upstream.url}/v1",
        http_client=sent.client(),
    )


def test_portkey_sdk_chat(start_keyway, upstream, sent):
    client = portkey_client(start_keyway(CUSTOM_HOST), upstream, sent)
    resp = client.chat.completions.create(model=MODEL, messages=MESSAGES, timeout=SDK_TIMEOUT_S)

    assert resp.choices[0].message.content == REPLY
    # The SDK's placeholder Authorization must lose to x-portkey-api-key.
    assert sent.only().headers["authorization"] == "Bearer OPENAI_API_KEY"
    assert_forwarded(
        only_request(upstream), sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value="Bearer sk-provider-key",
        absent=["OPENAI_API_KEY"],
    )


def test_portkey_sdk_stream(start_keyway, upstream, sent):
    client = portkey_client(start_keyway(CUSTOM_HOST), upstream, sent)
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, timeout=SDK_TIMEOUT_S
    )
    assert stream_pieces(stream) == STREAM_PIECES

    got = only_request(upstream)
    assert got.json()["stream"] is True
    assert_forwarded(
        got, sent.only(), path="/v1/chat/completions",
        auth_header="authorization", auth_value="Bearer sk-provider-key",
        absent=["OPENAI_API_KEY"],
    )
