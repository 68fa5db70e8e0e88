"""keyway's admin API (its own listener, `--admin-listen`) driven by the Portkey Python SDK's own
admin methods, unchanged: only `base_url` (the admin listener + `/v1`, which the SDK never adds)
and `api_key` (a gateway key, sent as `x-portkey-api-key`) are set. Every answer is checked
exactly, and what the API creates is then used for real traffic through keyway's proxy to a
recording fake upstream (and, for secret references, a real Vault API server: rusty_vault).

The last four tests pin defects this suite found (a secret reference accepted and then left out,
a workspace's id refused as workspace_id, the workspaces list ignoring its name filter, a
stored config's virtual key deletable under it).
"""

import hashlib
import json
import re
import secrets
import uuid

import openai
import pytest
from portkey_ai import Portkey
from portkey_ai._vendor import openai as vendored_openai
from portkey_ai.api_resources import exceptions as pkx

from conftest import free_ports
from fake_upstream import REPLY
from sdk_helpers import MESSAGES, MODEL, SDK_TIMEOUT_S, SentLog, assert_forwarded
from vault_server import start_vault

TIMEOUTS = """
[upstream]
connect_timeout_ms = 2000
read_timeout_ms = 10000
"""
MOUNT = "kw-admin-kv"  # a KV v1 mount of this module's own
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --- fixtures --------------------------------------------------------------------------------

def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def masked(value):
    """keyway's mask of a secret of 12 characters or more: its first four, then `****`."""
    assert len(value) >= 12
    return value[:4] + "****"


class Gateway:
    """A keyway with an organisation owner key (`boss`, admin API only) and a member key of
    workspace team-a (`app`, traffic only)."""

    def __init__(self, kw, boss, app, upstream):
        self.kw, self.boss, self.app, self.upstream = kw, boss, app, upstream

    def admin(self, api_key=None):
        """The Portkey SDK on the admin API, as a user would set it up."""
        return Portkey(base_url=f"{self.kw.admin_url}/v1", api_key=api_key or self.boss)

    def portkey_chat(self, sent, api_key=None, **client_fields):
        """A chat completion through the proxy with the Portkey SDK (gateway key in
        x-portkey-api-key, plus e.g. virtual_key= or config=)."""
        client = Portkey(base_url=f"{self.kw.url}/v1", api_key=api_key or self.app,
                         http_client=sent.client(), **client_fields)
        return client.chat.completions.create(model=MODEL, messages=MESSAGES, timeout=SDK_TIMEOUT_S)

    def openai_chat(self, sent, api_key, **headers):
        """A chat completion through the proxy with the OpenAI SDK (gateway key as Bearer)."""
        client = openai.OpenAI(base_url=f"{self.kw.url}/v1", api_key=api_key,
                               default_headers=headers, http_client=sent.client(),
                               max_retries=0, timeout=SDK_TIMEOUT_S)
        return client.chat.completions.create(model=MODEL, messages=MESSAGES)


@pytest.fixture
def gw(start_keyway, upstream, secrets_registry):
    boss = secrets_registry.add("kw-boss-" + secrets.token_urlsafe(24))
    app = secrets_registry.add("kw-app-" + secrets.token_urlsafe(24))
    kw = start_keyway(TIMEOUTS + f"""
[auth]
mode = "enforced"

[workspaces.team-a]

[[api_keys]]
name = "boss"
hash = "{key_hash(boss)}"
role = "owner"

[[api_keys]]
name = "app"
hash = "{key_hash(app)}"
workspace = "team-a"

[providers.openai]
base_url = "{upstream.url}/v1"
""")
    return Gateway(kw, boss, app, upstream)


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """rusty_vault with a KV v1 mount (see vault_server.py for what it is and is not)."""
    workdir = tmp_path_factory.mktemp("rvault-admin")
    last = None
    for attempt in range(3):
        (port,) = free_ports(1)
        try:
            server = start_vault(port, workdir / f"try{attempt}")
            break
        except RuntimeError as e:
            last = e  # most likely the port was taken meanwhile
    else:
        raise last
    try:
        server.mount_kv(MOUNT)
        yield server
    finally:
        server.stop()


def new_secret(registry, prefix):
    return registry.add(prefix + secrets.token_urlsafe(24))


def assert_api_error(exc_info, cls, status, message, param=None):
    """The SDK's exception for keyway's `{"error":{"message",...}}` answer: its class, status,
    `body` (the SDK keeps the message string) and text."""
    err = exc_info.value
    assert type(err) is cls, type(err)
    assert err.status_code == status
    assert err.body == message
    assert str(err) == f"Error code: {status} - {message}"
    doc = err.response.json()
    assert set(doc) == {"error"} and doc["error"]["message"] == message, doc
    assert err.response.headers["content-type"] == "application/json"
    if param is not None:
        assert doc["error"]["param"] == param, doc
    return doc["error"]


def assert_row_basics(obj, object_name):
    """What every stored object's answer carries: a UUID id, RFC 3339 stamps, its object."""
    assert str(uuid.UUID(obj["id"])) == obj["id"]
    assert STAMP.match(obj["created_at"]) and STAMP.match(obj["last_updated_at"]), obj
    assert obj["object"] == object_name
    assert obj["source"] == "api"


def dump(model):
    return model.model_dump()


def vault_reference_body(vault, token, **extra):
    return dict(name="OpenAI key in Vault", manager_type="hashicorp_vault",
                auth_config={"vault_addr": vault.url, "vault_token": token,
                             "vault_mount": MOUNT, "vault_kv_version": 1},
                secret_path="admin/openai", secret_key="api_key", **extra)


# --- 1. workspaces -----------------------------------------------------------------------------

def test_workspaces_create_list_retrieve_update_delete(gw):
    admin = gw.admin()

    ws = admin.admin.workspaces.create(name="Team B", description="the b team")
    got = dump(ws)
    assert_row_basics(got, "workspace")
    assert (ws.slug, ws.name, ws.description, ws.workspace_id) == (
        "team-b", "Team B", "the b team", "team-b")
    assert ws.created_at == ws.last_updated_at

    listed = admin.admin.workspaces.list()
    assert (listed.object, listed.total) == ("list", 2)
    assert [(w.slug, w.source) for w in listed.data] == [("team-a", "file"), ("team-b", "api")]
    assert listed.data[0].read_only is True and listed.data[0].id == "team-a"
    assert listed.data[1].id == ws.id

    by_slug = admin.admin.workspaces.retrieve(workspace_id="team-b")
    by_id = admin.admin.workspaces.retrieve(workspace_id=ws.id)
    assert dump(by_slug) == dump(by_id)
    assert (by_slug.id, by_slug.name, by_slug.description) == (ws.id, "Team B", "the b team")

    updated = admin.admin.workspaces.update(workspace_id=ws.id, name="Team Bee",
                                            description="renamed")
    assert (updated.id, updated.slug, updated.name, updated.description) == (
        ws.id, "team-b", "Team Bee", "renamed")
    again = admin.admin.workspaces.retrieve(workspace_id="team-b")
    assert (again.name, again.description, again.slug) == ("Team Bee", "renamed", "team-b")

    gone = admin.admin.workspaces.delete(workspace_id="team-b")
    assert (gone.id, gone.slug, gone.object, gone.deleted) == (ws.id, "team-b", "workspace", True)
    with pytest.raises(pkx.NotFoundError) as e:
        admin.admin.workspaces.retrieve(workspace_id="team-b")
    assert_api_error(e, pkx.NotFoundError, 404, "no workspace")
    listed = admin.admin.workspaces.list()
    assert listed.total == 1 and [w.slug for w in listed.data] == ["team-a"]


# --- 2. secret references (the SDK's generic post/get/put/delete) ------------------------------

def test_secret_references_generic_methods_crud_masked(gw, vault, secrets_registry):
    admin = gw.admin()
    token = new_secret(secrets_registry, "hvs.admin-")
    body = vault_reference_body(vault, token, tags={"team": "a"})

    created = admin.post("/secret-references", **body)
    got = dump(created)
    assert_row_basics(got, "secret-reference")
    slug, rid = got["slug"], got["id"]
    expected = {
        "id": rid, "slug": "openai-key-in-vault", "name": "OpenAI key in Vault",
        "manager_type": "hashicorp_vault", "secret_path": "admin/openai", "secret_key": "api_key",
        "tags": {"team": "a"}, "allow_all_workspaces": True, "allowed_workspaces": [],
        "workspace_id": None, "object": "secret-reference", "source": "api",
        "created_at": got["created_at"], "last_updated_at": got["last_updated_at"],
        "auth_config": {"vault_addr": vault.url, "vault_mount": MOUNT, "vault_kv_version": 1,
                        "masked_vault_token": masked(token)},
    }
    # GenericResponse's own fields (success, data, warning) are None: keyway does not send them.
    assert got == {**expected, "success": None, "data": None, "warning": None}

    for ident in (slug, rid):
        r = admin.get(path=f"/secret-references/{ident}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == expected
        assert token not in r.text and "vault_token" not in r.json()["auth_config"]

    r = admin.get(path="/secret-references?current_page=0&page_size=10")
    assert r.json() == {"object": "list", "total": 1, "data": [expected]}
    assert token not in r.text

    # PUT merges auth_config: the fields not sent stay.
    r = admin.put(path=f"/secret-references/{slug}",
                  body={"auth_config": {"vault_namespace": "team1"}, "description": "moved"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["auth_config"] == {**expected["auth_config"], "vault_namespace": "team1"}
    assert doc["description"] == "moved"
    assert admin.get(path=f"/secret-references/{slug}").json() == doc

    # A new token replaces the old one, masked as well.
    token2 = new_secret(secrets_registry, "hvs.admin2-")
    r = admin.put(path=f"/secret-references/{rid}", body={"auth_config": {"vault_token": token2}})
    assert r.json()["auth_config"] == {**doc["auth_config"], "masked_vault_token": masked(token2)}
    assert token not in r.text and token2 not in r.text

    # allowed_workspaces turns allow_all_workspaces off; true purges the list again.
    r = admin.put(path=f"/secret-references/{slug}", body={"allowed_workspaces": ["team-a"]})
    assert (r.json()["allow_all_workspaces"], r.json()["allowed_workspaces"]) == (False, ["team-a"])
    r = admin.put(path=f"/secret-references/{slug}", body={"allow_all_workspaces": True})
    assert (r.json()["allow_all_workspaces"], r.json()["allowed_workspaces"]) == (True, [])

    r = admin.delete(path=f"/secret-references/{slug}")
    assert r.status_code == 200
    assert r.json() == {"id": rid, "slug": slug, "object": "secret-reference", "deleted": True}
    with pytest.raises(pkx.NotFoundError) as e:
        admin.get(path=f"/secret-references/{slug}")
    assert_api_error(e, pkx.NotFoundError, 404, "no secret reference")
    assert admin.get(path="/secret-references").json() == {"object": "list", "total": 0, "data": []}


# --- 3. integrations, with a Vault secret reaching the upstream --------------------------------

def test_integrations_crud_and_vault_mapped_key_reaches_the_upstream(gw, vault, secrets_registry):
    admin = gw.admin()
    vault_key = new_secret(secrets_registry, "sk-vault-")
    vault.write(MOUNT, "admin/openai", {"api_key": vault_key})
    token = secrets_registry.add(vault.root_token)
    ref = admin.post("/secret-references", **vault_reference_body(vault, token))

    # Mapped by the reference's id; the answer keeps the mapping as given.
    mapping = [{"target_field": "key", "secret_reference_id": ref.id}]
    via_vault = admin.integrations.create(name="OpenAI via Vault", ai_provider_id="openai",
                                          secret_mappings=mapping)
    got = dump(via_vault)
    assert_row_basics(got, "integration")
    assert (via_vault.slug, got["ai_provider_id"], got["secret_mappings"], got["workspace_id"]) == (
        "openai-via-vault", "openai", mapping, None)
    assert "masked_key" not in got

    static = new_secret(secrets_registry, "sk-static-")
    plain = admin.integrations.create(name="OpenAI static", ai_provider_id="openai", key=static,
                                      description="a plain key")
    assert plain.slug == "openai-static" and dump(plain)["masked_key"] == masked(static)
    assert static not in json.dumps(dump(plain))

    listed = admin.integrations.list()
    assert (listed.object, listed.total) == ("list", 2)
    assert sorted(i.slug for i in listed.data) == ["openai-static", "openai-via-vault"]

    detail = admin.integrations.retrieve(slug="openai-via-vault")
    assert (detail.id, detail.name, detail.ai_provider_id, detail.masked_key) == (
        via_vault.id, "OpenAI via Vault", "openai", None)
    assert detail.secret_mappings == mapping
    detail = admin.integrations.retrieve(slug=plain.id)
    assert (detail.slug, detail.description, detail.masked_key) == (
        "openai-static", "a plain key", masked(static))

    static2 = new_secret(secrets_registry, "sk-static2-")
    admin.integrations.update(slug="openai-static", key=static2, description="rotated")
    detail = admin.integrations.retrieve(slug="openai-static")
    assert (detail.description, detail.masked_key) == ("rotated", masked(static2))

    # A virtual key of team-a over the Vault integration (keyway's `integration` field, sent
    # through the SDK's **kwargs): the upstream gets the value read from Vault.
    vk = admin.virtual_keys.create(name="Vault VK", provider="openai",
                                   integration="openai-via-vault", workspace_id="team-a")
    assert (vk.slug, vk.object, dump(vk)["integration"]) == ("vault-vk", "virtual-key",
                                                              "openai-via-vault")
    sent = SentLog()
    resp = gw.portkey_chat(sent, virtual_key="vault-vk")
    assert resp.choices[0].message.content == REPLY
    assert_forwarded(gw.upstream.requests[-1], sent.only(), path="/v1/chat/completions",
                     auth_header="authorization", auth_value=f"Bearer {vault_key}",
                     absent=[gw.app, token, "OPENAI_API_KEY"])

    # In use: refused, naming what uses it (409 → ConflictError).
    with pytest.raises(pkx.ConflictError) as e:
        admin.delete(path=f"/secret-references/{ref.slug}")
    assert_api_error(e, pkx.ConflictError, 409,
                     "secret reference 'openai-key-in-vault' is in use by integration "
                     "openai-via-vault; remove those first")
    with pytest.raises(pkx.ConflictError) as e:
        admin.integrations.delete(slug="openai-via-vault")
    assert_api_error(e, pkx.ConflictError, 409,
                     "integration 'openai-via-vault' is in use by virtual key vault-vk; "
                     "remove those first")

    # Deleted in order, each answer names what went.
    assert admin.virtual_keys.delete(slug="vault-vk").deleted is True
    gone = admin.integrations.delete(slug="openai-via-vault")
    assert (gone.id, gone.slug, gone.object, gone.deleted) == (
        via_vault.id, "openai-via-vault", "integration", True)
    assert admin.delete(path=f"/secret-references/{ref.slug}").json()["deleted"] is True
    assert admin.integrations.delete(slug="openai-static").deleted is True
    assert admin.integrations.list().total == 0
    with pytest.raises(pkx.NotFoundError) as e:
        admin.integrations.retrieve(slug="openai-static")
    assert_api_error(e, pkx.NotFoundError, 404, "no integration")


# --- 4. virtual keys, and a chat through the one created ---------------------------------------

def test_virtual_keys_crud_and_chat_uses_the_virtual_keys_own_key(gw, secrets_registry):
    admin = gw.admin()
    k1 = new_secret(secrets_registry, "sk-vk-one-")

    vk = admin.virtual_keys.create(name="Team A OpenAI", provider="openai", key=k1,
                                   workspace_id="team-a", note="first")
    got = dump(vk)
    assert_row_basics(got, "virtual-key")
    assert (vk.slug, vk.object, got["provider"], got["workspace_id"], got["note"]) == (
        "team-a-openai", "virtual-key", "openai", "team-a", "first")
    assert got["masked_key"] == masked(k1) and k1 not in json.dumps(got)

    for listed in (admin.virtual_keys.list(), admin.virtual_keys.list(workspace_id="team-a")):
        assert (listed.object, listed.total) == ("list", 1)
        assert listed.data[0]["id"] == vk.id and listed.data[0]["masked_key"] == masked(k1)
        assert k1 not in json.dumps(listed.data)
    assert admin.virtual_keys.list(workspace_id="team-z").total == 0

    detail = admin.virtual_keys.retrieve(slug="team-a-openai")
    assert {k: v for k, v in dump(detail).items() if v is not None} == {
        k: v for k, v in got.items() if v is not None}

    sent = SentLog()
    resp = gw.portkey_chat(sent, virtual_key="team-a-openai")
    assert resp.choices[0].message.content == REPLY
    assert sent.only().headers["x-portkey-virtual-key"] == "team-a-openai"
    assert sent.only().headers["x-portkey-api-key"] == gw.app
    assert_forwarded(gw.upstream.requests[-1], sent.only(), path="/v1/chat/completions",
                     auth_header="authorization", auth_value=f"Bearer {k1}",
                     absent=[gw.app, gw.boss, "OPENAI_API_KEY"])

    # A new key is live on the next request.
    k2 = new_secret(secrets_registry, "sk-vk-two-")
    up = admin.virtual_keys.update(slug="team-a-openai", key=k2, note="rotated")
    assert (up.id, up.slug, up.object) == (vk.id, "team-a-openai", "virtual-key")
    assert (dump(up)["masked_key"], dump(up)["note"]) == (masked(k2), "rotated")
    sent = SentLog()
    gw.portkey_chat(sent, virtual_key="team-a-openai")
    assert gw.upstream.requests[-1].header("authorization") == [f"Bearer {k2}"]

    gone = admin.virtual_keys.delete(slug="team-a-openai")
    assert (gone.id, gone.slug, gone.object, gone.deleted) == (vk.id, "team-a-openai",
                                                               "virtual-key", True)
    n = len(gw.upstream.requests)
    with pytest.raises(vendored_openai.AuthenticationError) as e:
        gw.portkey_chat(SentLog(), virtual_key="team-a-openai")
    assert e.value.status_code == 401
    assert e.value.response.json()["error"]["message"] == "invalid virtual key"
    assert len(gw.upstream.requests) == n
    with pytest.raises(pkx.NotFoundError) as e:
        admin.virtual_keys.retrieve(slug="team-a-openai")
    assert_api_error(e, pkx.NotFoundError, 404, "no virtual key")


# --- 5. gateway API keys -----------------------------------------------------------------------

def test_api_keys_created_once_used_for_traffic_revoked_and_deleted(gw, secrets_registry):
    admin = gw.admin()
    vk_key = new_secret(secrets_registry, "sk-vk-")
    admin.virtual_keys.create(name="vk-a", provider="openai", key=vk_key, workspace_id="team-a")

    created = admin.api_keys.create(type="workspace", sub_type="service", name="ci-bot",
                                    workspace_id="team-a", scopes=["completions.write"],
                                    description="for CI")
    key = secrets_registry.add(created.key)
    got = dump(created)
    assert_row_basics(got, "api-key")
    assert re.fullmatch(r"kw-[A-Za-z0-9_-]{43}", key), "not a keyway key"
    assert (got["name"], got["type"], got["role"], got["status"], got["workspace_id"]) == (
        "ci-bot", "workspace-service", "member", "active", "team-a")
    assert (got["scopes"], got["description"], got["revoked"]) == (
        ["completions.write"], "for CI", False)
    shown = key[:7] + "********"

    listed = admin.api_keys.list()
    assert (listed.object, listed.total) == ("list", 3)
    assert [(k["name"], k["source"]) for k in listed.data] == [
        ("boss", "file"), ("app", "file"), ("ci-bot", "api")]
    assert listed.data[2]["key"] == shown and listed.data[2]["id"] == created.id
    assert key not in json.dumps(listed.data)
    assert admin.api_keys.list(workspace_id="team-a").total == 2  # app and ci-bot

    detail = admin.api_keys.retrieve(id=created.id)
    assert (detail.id, detail.key, detail.name, detail.status) == (created.id, shown, "ci-bot",
                                                                    "active")
    assert key not in json.dumps(dump(detail))

    def chat():
        sent = SentLog()
        gw.openai_chat(sent, key, **{"x-portkey-virtual-key": "vk-a"})
        assert_forwarded(gw.upstream.requests[-1], sent.only(), path="/v1/chat/completions",
                         auth_header="authorization", auth_value=f"Bearer {vk_key}",
                         absent=[key])

    def refused():
        n = len(gw.upstream.requests)
        with pytest.raises(openai.AuthenticationError) as e:
            gw.openai_chat(SentLog(), key, **{"x-portkey-virtual-key": "vk-a"})
        err = e.value.response.json()["error"]
        assert (err["code"], err["message"]) == ("invalid_api_key", "invalid gateway API key")
        assert key not in e.value.response.text
        assert len(gw.upstream.requests) == n

    chat()

    revoked = admin.api_keys.update(id=created.id, name="ci-bot-2", revoked=True)
    assert (revoked.id, revoked.name, revoked.status, revoked.key) == (
        created.id, "ci-bot-2", "revoked", shown)
    refused()
    assert admin.api_keys.update(id=created.id, revoked=False).status == "active"
    chat()

    gone = admin.api_keys.delete(id=created.id)
    assert (gone.id, gone.object, gone.deleted) == (created.id, "api-key", True)
    refused()
    with pytest.raises(pkx.NotFoundError) as e:
        admin.api_keys.retrieve(id=created.id)
    assert_api_error(e, pkx.NotFoundError, 404, "no API key")

    # An organisation key made through the API is an admin of the admin API at once.
    org = admin.api_keys.create(type="organisation", sub_type="service", name="org-admin")
    org_key = secrets_registry.add(org.key)
    assert (dump(org)["role"], dump(org)["type"], dump(org)["workspace_id"]) == (
        "admin", "organisation-service", None)
    assert gw.admin(org_key).virtual_keys.list().total == 1


# --- 6. configs, and a request naming one by slug ----------------------------------------------

def test_configs_crud_and_request_names_the_stored_config_by_slug(gw, secrets_registry):
    admin = gw.admin()
    vk_key = new_secret(secrets_registry, "sk-vk-")
    admin.virtual_keys.create(name="vk-a", provider="openai", key=vk_key, workspace_id="team-a")

    cfg = admin.configs.create(name="Team A default", config={"virtual_key": "vk-a"},
                               workspace_id="team-a")
    got = dump(cfg)
    assert_row_basics(got, "config")
    assert (cfg.slug, cfg.object, got["config"], got["workspace_id"], got["name"]) == (
        "team-a-default", "config", {"virtual_key": "vk-a"}, "team-a", "Team A default")

    listed = admin.configs.list()
    assert (listed.object, listed.total) == ("list", 1) and listed.data[0]["id"] == cfg.id
    detail = admin.configs.retrieve(slug="team-a-default")
    assert (detail.id, detail.name, detail.config, detail.workspace_id) == (
        cfg.id, "Team A default", {"virtual_key": "vk-a"}, "team-a")

    new = {"virtual_key": "vk-a", "request_timeout": 5000}
    up = admin.configs.update(slug="team-a-default", name="Team A route", config=new)
    assert (up.object, dump(up)["config"], dump(up)["name"]) == ("config", new, "Team A route")
    assert admin.configs.retrieve(slug="team-a-default").config == new

    sent = SentLog()
    resp = gw.portkey_chat(sent, config="team-a-default")
    assert resp.choices[0].message.content == REPLY
    assert sent.only().headers["x-portkey-config"] == "team-a-default"
    assert_forwarded(gw.upstream.requests[-1], sent.only(), path="/v1/chat/completions",
                     auth_header="authorization", auth_value=f"Bearer {vk_key}",
                     absent=[gw.app, "OPENAI_API_KEY"])

    # A provider key inside a config is masked on every read.
    inline = new_secret(secrets_registry, "sk-inline-")
    with_key = admin.configs.create(name="with key", config={"provider": "openai",
                                                             "api_key": inline},
                                    workspace_id="team-a")
    assert dump(with_key)["config"] == {"provider": "openai", "api_key": masked(inline)}
    assert admin.configs.retrieve(slug="with-key").config == {"provider": "openai",
                                                              "api_key": masked(inline)}
    assert inline not in json.dumps(dump(admin.configs.list()))
    assert admin.configs.delete(slug="with-key").deleted is True

    gone = admin.configs.delete(slug="team-a-default")
    assert (gone.id, gone.slug, gone.object, gone.deleted) == (cfg.id, "team-a-default", "config",
                                                               True)
    assert admin.configs.list().total == 0
    n = len(gw.upstream.requests)
    with pytest.raises(vendored_openai.BadRequestError) as e:
        gw.portkey_chat(SentLog(), config="team-a-default")
    assert "names no stored config" in e.value.response.text
    assert len(gw.upstream.requests) == n


# --- 7. errors as the SDK's exceptions ---------------------------------------------------------

def test_admin_errors_surface_as_the_sdks_exceptions_with_keyways_message(gw, secrets_registry):
    admin = gw.admin()

    # 401: no key, a wrong key.
    wrong = new_secret(secrets_registry, "kw-wrong-")
    with pytest.raises(pkx.AuthenticationError) as e:
        gw.admin(wrong).virtual_keys.list()
    assert_api_error(e, pkx.AuthenticationError, 401, "invalid gateway API key")
    with pytest.raises(pkx.AuthenticationError) as e:
        Portkey(base_url=f"{gw.kw.admin_url}/v1", api_key="").virtual_keys.list()
    assert_api_error(e, pkx.AuthenticationError, 401, "missing credentials: send a gateway API "
                     "key in x-portkey-api-key or Authorization: Bearer")

    # 403: a member key; a workspace admin outside its reach; a config file object.
    with pytest.raises(pkx.PermissionDeniedError) as e:
        gw.admin(gw.app).virtual_keys.list()
    assert_api_error(e, pkx.PermissionDeniedError, 403,
                     "the admin API needs the owner or admin role")
    ws_admin = admin.api_keys.create(type="workspace", sub_type="service", name="team-a-admin",
                                     workspace_id="team-a", role="admin")
    ws_admin_key = secrets_registry.add(ws_admin.key)
    with pytest.raises(pkx.PermissionDeniedError) as e:
        gw.admin(ws_admin_key).admin.workspaces.create(name="Team Z")
    assert_api_error(e, pkx.PermissionDeniedError, 403,
                     "only organisation owners and admins manage workspaces")
    with pytest.raises(pkx.PermissionDeniedError) as e:
        admin.admin.workspaces.delete(workspace_id="team-a")
    assert_api_error(e, pkx.PermissionDeniedError, 403,
                     "workspace 'team-a' is declared in the config file: change it there")

    # 400 naming the field.
    with pytest.raises(pkx.BadRequestError) as e:
        admin.virtual_keys.create(name="bad", provider="nope", key="sk-x-0123456789ab",
                                  workspace_id="team-a")
    assert_api_error(e, pkx.BadRequestError, 400, "provider: unknown provider 'nope'", "provider")
    with pytest.raises(pkx.BadRequestError) as e:
        admin.virtual_keys.create(name="no key", provider="openai", workspace_id="team-a")
    assert_api_error(e, pkx.BadRequestError, 400,
                     "key: is required (or an integration, or a secret mapping of key)", "key")
    with pytest.raises(pkx.BadRequestError) as e:
        admin.post("/secret-references", name="x", manager_type="gcp_sm",
                   auth_config={"vault_addr": "http://127.0.0.1:9"}, secret_path="p")
    assert_api_error(e, pkx.BadRequestError, 400,
                     "manager_type: must be aws_sm, azure_kv or hashicorp_vault", "manager_type")
    with pytest.raises(pkx.BadRequestError) as e:  # the SDK drops "" values: secret_path missing
        admin.post("/secret-references", name="x", manager_type="hashicorp_vault",
                   auth_config={"vault_addr": "http://127.0.0.1:9"}, secret_path="")
    assert_api_error(e, pkx.BadRequestError, 400, "secret_path: is required", "secret_path")
    with pytest.raises(pkx.BadRequestError) as e:  # checked against the whole configuration
        admin.post("/secret-references", name="x", manager_type="hashicorp_vault",
                   auth_config={"vault_addr": "http://127.0.0.1:9", "aws_region": "eu-west-1"},
                   secret_path="p")
    assert_api_error(e, pkx.BadRequestError, 400, "auth_config.aws_region: is not an auth_config "
                     "field of manager_type hashicorp_vault", "auth_config.aws_region")
    with pytest.raises(pkx.BadRequestError) as e:
        admin.api_keys.create(type="team", sub_type="service", name="x")
    assert_api_error(e, pkx.BadRequestError, 400, "type: must be organisation or workspace", "type")
    with pytest.raises(pkx.BadRequestError) as e:
        admin.api_keys.create(type="workspace", sub_type="service", name="x")
    assert_api_error(e, pkx.BadRequestError, 400,
                     "workspace_id: is required (the owning workspace's slug)", "workspace_id")

    # 409: a slug taken; a workspace still in use.
    admin.admin.workspaces.create(name="Team B")
    vk = admin.virtual_keys.create(name="VK B", provider="openai", workspace_id="team-b",
                                   key=new_secret(secrets_registry, "sk-b-"))
    with pytest.raises(pkx.ConflictError) as e:
        admin.virtual_keys.create(name="VK B", provider="openai", workspace_id="team-b",
                                  key="sk-b-0123456789abcdef")
    assert_api_error(e, pkx.ConflictError, 409, "a virtual key with slug 'vk-b' already exists")
    with pytest.raises(pkx.ConflictError) as e:
        admin.admin.workspaces.delete(workspace_id="team-b")
    assert_api_error(e, pkx.ConflictError, 409,
                     "workspace 'team-b' is in use by virtual key vk-b; remove those first")

    # A workspace admin sees its own workspace's objects only.
    team_a_vk = admin.virtual_keys.create(name="VK A", provider="openai", workspace_id="team-a",
                                          key=new_secret(secrets_registry, "sk-a-"))
    mine = gw.admin(ws_admin_key).virtual_keys.list()
    assert [v["slug"] for v in mine.data] == [team_a_vk.slug]
    with pytest.raises(pkx.PermissionDeniedError) as e:
        gw.admin(ws_admin_key).virtual_keys.retrieve(slug=vk.slug)
    assert_api_error(e, pkx.PermissionDeniedError, 403,
                     "this key may not manage workspace team-b's objects")

    # The SDK does not retry a 4xx: each of these reached keyway once (nothing was created twice).
    assert sorted(v["slug"] for v in admin.virtual_keys.list().data) == ["vk-a", "vk-b"]


# --- found by this suite and fixed: each test was an xfail with the repro until the fix ----------

def test_secret_reference_with_portkeys_vault_auth_type_is_usable_or_refused(gw, vault,
                                                                            secrets_registry):
    admin = gw.admin()
    token = secrets_registry.add(vault.root_token)
    body = vault_reference_body(vault, token)
    body["auth_config"]["vault_auth_type"] = "token"  # Portkey's Vault discriminator
    ref = admin.post("/secret-references", **body)
    bogus = vault_reference_body(vault, token)
    bogus["name"] = "bogus"
    bogus["auth_config"]["bogus_field"] = "x"
    with pytest.raises(pkx.BadRequestError) as e:
        admin.post("/secret-references", **bogus)
    assert "auth_config.bogus_field: unknown field" in e.value.body
    integration = admin.integrations.create(
        name="uses it", ai_provider_id="openai",
        secret_mappings=[{"target_field": "key", "secret_reference_id": ref.slug}])
    assert integration.slug == "uses-it"


def test_workspace_id_may_be_the_workspaces_uuid(gw, secrets_registry):
    admin = gw.admin()
    ws = admin.admin.workspaces.create(name="Team B")
    vk = admin.virtual_keys.create(name="VK B", provider="openai", workspace_id=ws.id,
                                   key=new_secret(secrets_registry, "sk-b-"))
    assert dump(vk)["workspace_id"] == "team-b"
    assert admin.virtual_keys.list(workspace_id=ws.id).total == 1


def test_workspaces_list_filters_by_name(gw):
    admin = gw.admin()
    admin.admin.workspaces.create(name="Team B")
    listed = admin.admin.workspaces.list(name="Team B")
    assert [w.slug for w in listed.data] == ["team-b"]


def test_virtual_key_a_stored_config_names_cannot_be_deleted(gw, secrets_registry):
    admin = gw.admin()
    admin.virtual_keys.create(name="vk-a", provider="openai", workspace_id="team-a",
                              key=new_secret(secrets_registry, "sk-vk-"))
    admin.configs.create(name="Team A default", config={"virtual_key": "vk-a"},
                         workspace_id="team-a")
    with pytest.raises(pkx.ConflictError):
        admin.virtual_keys.delete(slug="vk-a")
