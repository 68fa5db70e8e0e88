"""What ships in conf/ for deployment, checked against the real tools and a real keyway:

- conf/k8s: every built-in kind validated with kubernetes-validate against Kubernetes 1.30's
  schemas (`--strict`: unknown fields fail); the ServiceMonitor (a CRD the validator has no schema
  for) and the Kustomization checked field by field here; the manifests agree with keyway (probe
  ports and paths, the config mounted as a watched directory, the grace period, workload identity)
  and the ConfigMap's keyway.toml passes `keyway --check-config`.
- conf/systemd/keyway.service: `systemd-analyze verify`, and the signals keyway expects.
- conf/prometheus: `promtool check rules` and `promtool test rules` (and a broken expectation
  fails it); every alert has a firing test case.
- conf/grafana/keyway.json: every PromQL expression names only metrics a running keyway exports,
  and a real Prometheus accepts every expression.
- A real Prometheus (Debian's 2.42) scraping two keyways whose Entra credential gets 30-second
  tokens from the fake Entra, with conf/prometheus/alerts.yml loaded (a copy whose `for:` are
  2 s and whose evaluation interval is 1 s): no token alert while Entra answers, through a
  renewal; KeywayTokenExpiringWithoutRefresh firing for both instances once Entra is down.
"""

import configparser
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

import fake_entra
from conftest import free_ports, keyway_bin
from fake_entra import FakeEntra
from fake_upstream import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "conf/k8s"
PROM = ROOT / "conf/prometheus"
DASHBOARD = ROOT / "conf/grafana/keyway.json"
UNIT = ROOT / "conf/systemd/keyway.service"
VENV_BIN = Path(sys.executable).parent
TENANT, CLIENT_ID = "tenant-deploy", "deploy-client-id"
TOKEN_LIFETIME_S = 30


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def tool(name):
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    assert path, f"{name} not found: run tests/setup.sh"
    return path


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests():
    out = {}
    for p in sorted(K8S.glob("*.yaml")):
        for d in docs(p):
            out[d["kind"]] = d
    return out


def keyway_toml():
    return tomllib.loads(manifests()["ConfigMap"]["data"]["keyway.toml"])


# --- Kubernetes --------------------------------------------------------------------------------

BUILT_IN = {"ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
            "HorizontalPodAutoscaler"}


def test_every_built_in_manifest_validates_against_kubernetes_1_30():
    files = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    r = run([tool("kubernetes-validate"), "-k", "1.30", "--strict", *map(str, files)])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    passed = set(re.findall(r"passed for resource (\w+)/", out))
    assert passed == {k.lower() for k in BUILT_IN}, out
    # The kinds it cannot check: no schema (handled by hand below), not a pass.
    for crd in ("ServiceMonitor", "PrometheusRule"):
        assert f"Couldn't find schema for kind {crd}" in out, out


def test_the_validator_refuses_a_broken_deployment(tmp_path):
    dep = manifests()["Deployment"]
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    bad = tmp_path / "deployment.yaml"
    bad.write_text(yaml.safe_dump(dep))
    r = run([tool("kubernetes-validate"), "-k", "1.30", "--strict", str(bad)])
    assert r.returncode != 0 and "httpGett" in r.stdout + r.stderr, r.stdout + r.stderr


# The fields of monitoring.coreos.com/v1 ServiceMonitor this file may use (the operator's CRD,
# spec and spec.endpoints[]), checked by hand: kubernetes-validate has no CRD schemas.
SM_SPEC_FIELDS = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
                  "podTargetLabels", "sampleLimit", "attachMetadata"}
SM_ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
                      "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
                      "tlsConfig", "bearerTokenSecret", "authorization", "params"}
DURATION = re.compile(r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?$")


def test_the_service_monitor_matches_the_operator_crd_and_scrapes_the_metrics_port():
    m = manifests()
    sm, svc = m["ServiceMonitor"], m["Service"]
    assert (sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert set(sm["spec"]) <= SM_SPEC_FIELDS, sm["spec"]
    want = sm["spec"]["selector"]["matchLabels"]
    assert want.items() <= svc["metadata"]["labels"].items(), "selects the keyway Service"
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert set(ep) <= SM_ENDPOINT_FIELDS, ep
        assert ep["port"] == "metrics" and ep["path"] == "/metrics", ep
        assert ep["scheme"] in ("http", "https")
        for k in ("interval", "scrapeTimeout"):
            assert DURATION.match(ep[k]) and ep[k], ep[k]
        assert svc_ports["metrics"]["targetPort"] == "metrics"


def test_the_prometheus_rule_carries_exactly_the_alert_rules():
    pr = manifests()["PrometheusRule"]
    assert (pr["apiVersion"], pr["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert set(pr["spec"]) == {"groups"}
    alerts = yaml.safe_load((PROM / "alerts.yml").read_text())
    assert pr["spec"]["groups"] == alerts["groups"], "conf/k8s/prometheusrule.yaml is stale"
    # Every rule field the operator's CRD knows for spec.groups[].rules[].
    for g in pr["spec"]["groups"]:
        assert set(g) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in g["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                              "annotations"}, r


def test_kustomization_lists_every_manifest():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert k["kind"] == "Kustomization"
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(k["resources"]) == sorted(files)
    assert k["images"][0]["name"] == manifests()["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]["image"].split(":")[0]


def test_the_deployment_agrees_with_how_keyway_listens_reloads_and_stops():
    m = manifests()
    cfg = keyway_toml()
    pod = m["Deployment"]["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(cfg["listen"].rsplit(":", 1)[1])
    assert ports["metrics"] == int(cfg["metrics_listen"].rsplit(":", 1)[1])
    assert cfg["listen"].startswith("0.0.0.0:") and cfg["metrics_listen"].startswith("0.0.0.0:")
    # /readyz and /healthz are served by the metrics listener only (src/proxy/health.rs).
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # The ConfigMap as a directory (a subPath mount is never updated), the file inside it.
    (mount,) = [v for v in c["volumeMounts"] if v["name"] == "config"]
    assert "subPath" not in mount and mount["readOnly"] is True
    (vol,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert vol["configMap"]["name"] == m["ConfigMap"]["metadata"]["name"]
    config_arg = c["args"][c["args"].index("--config") + 1]
    assert config_arg == f"{mount['mountPath']}/keyway.toml"
    assert cfg.get("watch_config", True) is True
    # SIGKILL only after preStop + keyway's grace period + Pingora's 5 s shutdown timeout.
    grace = cfg.get("grace_period_seconds", 30)
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + grace + 5
    # Hardening.
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # Writable places on a read-only root: the data dir and /tmp, both emptyDir.
    writable = {v["mountPath"] for v in c["volumeMounts"] if not v.get("readOnly")}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KEYWAY_DATA_DIR"] in writable and "/tmp" in writable
    # AKS workload identity.
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    sa = m["ServiceAccount"]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert re.fullmatch(r"[0-9a-f-]{36}", sa["metadata"]["annotations"][
        "azure.workload.identity/client-id"])
    # Everything selects the same pods.
    labels = pod["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        sel = m[kind]["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        assert sel.items() <= labels.items(), kind
    assert m["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = m["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == m["Deployment"]["metadata"]["name"]
    assert "replicas" not in m["Deployment"]["spec"], "the HPA owns the replica count"
    assert hpa["minReplicas"] >= 2


def test_the_configmap_config_is_valid_for_keyway(tmp_path):
    cfg = tmp_path / "keyway.toml"
    cfg.write_text(manifests()["ConfigMap"]["data"]["keyway.toml"])
    env = {**os.environ, "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
           "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
           "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token")}
    r = run([str(keyway_bin()), "--check-config", "--config", str(cfg)], env=env)
    assert r.returncode == 0 and "config OK" in r.stdout, r.stdout + r.stderr
    assert "listen 0.0.0.0:8787, metrics 0.0.0.0:9787, 2 thread(s)" in r.stdout, r.stdout


# --- systemd -----------------------------------------------------------------------------------

def test_the_systemd_unit_verifies_and_uses_keyways_signals(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None,
                                     dict_type=dict, empty_lines_in_values=False)
    unit.optionxform = str
    unit.read_string(UNIT.read_text())
    svc = unit["Service"]
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"  # keyway reloads on SIGHUP
    assert svc["KillSignal"] == "SIGTERM"  # graceful; SIGQUIT would be Pingora's upgrade
    assert int(svc["TimeoutStopSec"]) > 30 + 5  # grace_period_seconds default + shutdown
    assert "--config /etc/keyway/keyway.toml" in svc["ExecStart"]
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("DynamicUser", "yes"), ("CapabilityBoundingSet", "")]:
        assert svc[key] == want, key
    # systemd's own check, with the binary where the unit expects it swapped for the built one.
    copy = tmp_path / "keyway.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/keyway", str(keyway_bin())))
    r = run([tool("systemd-analyze"), "verify", str(copy)])
    assert r.returncode == 0, r.stdout + r.stderr


# --- Prometheus rules --------------------------------------------------------------------------

def alert_names():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    r = run([tool("promtool"), "check", "rules", str(PROM / "alerts.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in r.stdout
    # 2.42 resolves rule_files relative to the test file's directory.
    r = run([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=PROM)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not():
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())
    cases = [c for t in tests["tests"] for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == set(alert_names())
    assert silent == set(alert_names())


def test_a_wrong_expectation_fails_promtool(tmp_path):
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    text = (PROM / "alerts.test.yml").read_text()
    broken = text.replace("instance: a, credential: aoai}", "instance: b, credential: aoai}", 1)
    assert broken != text
    (tmp_path / "alerts.test.yml").write_text(broken)
    r = run([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=tmp_path)
    assert r.returncode != 0 and "KeywayTokenExpiringWithoutRefresh" in r.stdout + r.stderr


# --- Grafana dashboard -------------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "offset", "bool", "sum", "min", "max", "avg", "count", "stddev",
                "stdvar", "topk", "bottomk", "quantile", "count_values", "group", "inf", "nan"}
# Series Prometheus makes itself, not keyway.
PROMETHEUS_SERIES = {"up"}


def metric_names(expr):
    """The metric names a PromQL expression reads (without functions, keywords, labels)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        if word.lower() in PROMQL_WORDS or re.match(r"\s*\(", e[m.end():]):
            continue
        names.add(word)
    return names


def test_metric_name_extraction():
    got = metric_names('histogram_quantile(0.95, sum by (le, provider) '
                       '(rate(keyway_request_duration_seconds_bucket{job=~"$job"}[5m]))) '
                       '/ on (job) group_left () keyway_x and time() - up')
    assert got == {"keyway_request_duration_seconds_bucket", "keyway_x", "up"}


def dashboard_exprs():
    d = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            exprs.extend((p["title"], t["expr"]) for t in p.get("targets", []))
    walk(d["panels"])
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["query"]["query"])
            exprs.append((f"${v['name']}", q.group(1)))
    return exprs


def exported_names(text):
    """Metric names in a /metrics page (histograms as their _bucket/_sum/_count series)."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def scrape(kw):
    with urllib.request.urlopen(f"http://127.0.0.1:{kw.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def full_config(entra, upstream, sp_secret):
    return f"""
[azure]
authority_host = "{entra.url}"

[credentials.aoai]
type = "entra"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret = "{sp_secret}"

[[routes]]
name = "azure"
path_prefix = "/openai/"
provider = "azure-openai"
upstream = "{upstream.url}"
credential = "aoai"
"""


# Some series exist only with some configuration: the dashboard's keyway has an Entra
# credential, a JWT validator and a route with a fallback strategy.
def test_every_dashboard_query_names_only_metrics_keyway_exports(start_keyway, entra, upstream,
                                                                   sp_secret, request, tmp_path):
    jwks_port, tls_port = free_ports(2)
    # A TLS listener's certificate gauge needs a certificate: a self-signed one, made now.
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    made = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key),
                "-out", str(cert)])
    assert made.returncode == 0, made.stderr
    # Enforced, with a JWT validator (its key set never loads: the age series is there anyway)
    # and a TLS listener. Not watching its file: start_keyway writes the next keyway's config to
    # the same path.
    enforced = start_keyway("watch_config = false\n" + full_config(entra, upstream, sp_secret) + f"""
[tls]
listen = "127.0.0.1:{tls_port}"
cert_file = "{cert}"
key_file = "{key}"

[auth]
mode = "enforced"

[[auth.jwt]]
jwks_uri = "http://127.0.0.1:{jwks_port}/keys"
issuers = ["http://127.0.0.1:{jwks_port}"]
audiences = ["api://keyway"]
""")
    # Open, with a fallback route whose first target answers 501 (http.server without do_POST)
    # and is retried, and whose circuits are configured: one request makes the strategy series.
    failing = LoopbackServer(BaseHTTPRequestHandler).start()
    request.addfinalizer(failing.stop)
    pool = start_keyway(full_config(entra, upstream, sp_secret) + f"""
[[routes]]
name = "pool"
path_prefix = "/pool/"
provider = "openai"
strip_prefix = true
strategy = {{ mode = "fallback", cb_config = {{ failure_threshold = 5, cooldown_interval = 5000 }} }}
  [[routes.targets]]
  credential = "aoai"
  provider = "azure-openai"
  upstream = "{failing.url}"
  retry = {{ attempts = 1, on_status_codes = [501] }}
  [[routes.targets]]
  credential = "aoai"
  provider = "azure-openai"
  upstream = "{upstream.url}"
""")
    req = urllib.request.Request(f"{pool.url}/pool/chat/completions", data=b"{}", method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    # A streamed answer with usage: the token and time-to-first-token series.
    body = json.dumps({"stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"{pool.url}/pool/chat/completions", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and b"[DONE]" in r.read()
    # The refresher publishes the gauges on its first ticks.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = scrape(enforced) + scrape(pool)
        if "keyway_jwks_age_seconds{" in text and "keyway_token_lifetime_seconds{" in text:
            break
        time.sleep(0.2)
    exported = exported_names(text) | PROMETHEUS_SERIES

    def jwks_age():
        m = re.search(r'^keyway_jwks_age_seconds\{validator="auth.jwt\[0\]"\} (\S+)$',
                      scrape(enforced), re.M)
        return float(m.group(1))
    first = jwks_age()
    time.sleep(0.6)
    assert jwks_age() > first + 0.3, "the age of a key set that never loads grows"
    exprs = dashboard_exprs()
    assert len(exprs) > 30
    unknown = {(title, n) for title, e in exprs for n in metric_names(e) if n not in exported}
    assert not unknown, f"dashboard queries name metrics keyway does not export: {sorted(unknown)}"
    used = {n for _, e in exprs for n in metric_names(e)}
    for added in ("keyway_token_lifetime_seconds", "keyway_jwks_age_seconds",
                  "keyway_secret_age_seconds", "keyway_secret_max_age_seconds", "keyway_ready",
                  "keyway_config_last_reload_successful", "keyway_token_expiry_seconds",
                  "keyway_llm_tokens_total", "keyway_llm_time_to_first_token_seconds_bucket",
                  "keyway_client_connections", "keyway_limit_rejections_total",
                  "keyway_tls_cert_expiry_timestamp_seconds", "keyway_access_log_dropped_total",
                  "keyway_trace_spans_dropped_total"):
        assert added in used and added in exported, added


# --- a real Prometheus scraping two keyways ----------------------------------------------------

@pytest.fixture
def sp_secret(secrets_registry):
    return secrets_registry.add("entra-deploy-secret-" + secrets.token_urlsafe(24))


@pytest.fixture
def entra(sp_secret, secrets_registry, monkeypatch):
    # Short-lived tokens: keyway renews them at ~75% of 30 s.
    monkeypatch.setattr(fake_entra, "EXPIRES_IN", TOKEN_LIFETIME_S)
    server = FakeEntra(TENANT, CLIENT_ID, client_secret=sp_secret,
                       on_issue=secrets_registry.add).start()
    yield server
    try:
        server.stop()
    except OSError:
        pass  # already stopped by the test


class Prometheus:
    def __init__(self, tmp_path, targets):
        rules = yaml.safe_load((PROM / "alerts.yml").read_text())
        for g in rules["groups"]:
            g["interval"] = "1s"
            for r in g["rules"]:
                if "for" in r:
                    r["for"] = "2s"
        (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
        (self.port,) = free_ports(1)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [str(tmp_path / "alerts.yml")],
            "scrape_configs": [{"job_name": "keyway",
                                "static_configs": [{"targets": targets}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = tmp_path / "prometheus.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.wait(lambda: self.get("/-/ready", raw=True) == 200, 20, "Prometheus ready")

    def get(self, path, raw=False, **params):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status if raw else json.loads(r.read())
        except OSError as e:
            if raw:
                return None
            body = getattr(e, "read", lambda: b"")()
            return json.loads(body) if body else {"status": "error", "error": str(e)}

    def query(self, q):
        r = self.get("/api/v1/query", query=q)
        assert r["status"] == "success", (q, r)
        return r["data"]["result"]

    def alerts(self, name):
        return [a for a in self.get("/api/v1/alerts")["data"]["alerts"]
                if a["labels"]["alertname"] == name]

    def wait(self, cond, within, what):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log.read_text()[-3000:]}")
            if cond():
                return
            time.sleep(0.25)
        pytest.fail(f"{what}: not within {within}s; prometheus log:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def prometheus_factory(tmp_path):
    started = []

    def start(targets):
        p = Prometheus(tmp_path, targets)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


def test_prometheus_scrapes_two_keyways_and_fires_the_token_alert_when_entra_goes_down(
        start_keyway, entra, upstream, sp_secret, prometheus_factory):
    config = full_config(entra, upstream, sp_secret)
    kws = [start_keyway(config), start_keyway(config)]
    targets = [f"127.0.0.1:{kw.metrics_port}" for kw in kws]
    prom = prometheus_factory(targets)
    alert = "KeywayTokenExpiringWithoutRefresh"

    def scraped(q, n=2):
        return lambda: len(prom.query(q)) == n
    prom.wait(scraped('up{job="keyway"} == 1'), 20, "both keyways scraped")
    prom.wait(scraped(f"keyway_token_lifetime_seconds > {TOKEN_LIFETIME_S - 2}"), 20,
              "both token lifetimes")
    prom.wait(scraped("keyway_ready == 1"), 10, "both ready")

    # Healthy, through at least one renewal of each instance's token (at ~21-24 s).
    prom.wait(lambda: len(entra.accepted()) >= 4, 40, "a renewal on each instance")
    time.sleep(2)
    assert prom.query(f'count_over_time(ALERTS{{alertname="{alert}"}}[5m])') == [], \
        "the alert fired, or was pending, while Entra answered"
    low = prom.query("min_over_time((keyway_token_expiry_seconds"
                     " / keyway_token_lifetime_seconds)[2m:1s])")
    assert len(low) == 2 and all(float(r["value"][1]) > 0.15 for r in low), low

    # Every dashboard expression is valid PromQL to a real Prometheus.
    for title, expr in dashboard_exprs():
        q = (expr.replace("$__rate_interval", "1m").replace("$job", ".*")
             .replace("$instance", ".*"))
        r = prom.get("/api/v1/query", query=q)
        assert r["status"] == "success", (title, expr, r)

    # Entra goes down: 503 on the connections keyway keeps alive (their handler threads outlive
    # the listener), refused connections for new ones. Renewals fail, each token runs out, the
    # alert fires for both instances.
    def down(rec):
        raise fake_entra._Refuse(503, "temporarily_unavailable", "AADSTS90033: the fake is down")
    entra.validate = down
    entra.stop()

    def firing():
        got = [a for a in prom.alerts(alert) if a["state"] == "firing"]
        return {a["labels"]["instance"] for a in got} == set(targets)
    prom.wait(firing, 45, f"{alert} firing for both instances")
    for a in prom.alerts(alert):
        assert a["labels"]["credential"] == "aoai" and a["labels"]["severity"] == "critical"
        assert float(a["value"]) < 0.15 * TOKEN_LIFETIME_S, a
    failed = prom.query('sum by (instance) (keyway_token_fetches_total{outcome="unavailable"})'
                        " > 0")
    assert len(failed) == 2, failed
    assert all(kw.proc.poll() is None for kw in kws)
