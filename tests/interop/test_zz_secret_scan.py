"""Runs last (file name): every keyway log of the run must be free of every secret the tests
used. Logs and secrets come from this session's interop log directory (conftest.py) and from
the directories in KEYWAY_LOG_DIRS (colon-separated; tests/run.sh passes the Rust tests' log
folder, whose `secrets.txt` the Rust tests write), plus the file KEYWAY_SECRETS_FILE names.
Hits are reported as file, secret prefix and length: never the secret itself."""

import os
import urllib.parse

import pytest

from secret_scan import MIN_SECRET_LEN, SecretRegistry, collect, describe, log_dirs_from_env, scan


def report(hits):
    return "secrets found in keyway logs:\n" + "\n".join(f"  {h}" for h in hits)


def test_scanner_reports_a_planted_secret(tmp_path):
    planted = "kw-planted/secret+value=" + "x" * 16
    registry = SecretRegistry(tmp_path)
    registry.add(planted)
    registry.add("short")  # below MIN_SECRET_LEN: would match by chance, so not searched
    registry.add("kw-never-logged-secret")
    (tmp_path / "keyway-a.log").write_text(f"INFO token fetched\nDEBUG body: {planted}\n")
    (tmp_path / "keyway-b.log").write_text(
        f"DEBUG form client_assertion={urllib.parse.quote(planted, safe='')}&x=1\n")
    (tmp_path / "keyway-c.log").write_text("INFO nothing to see, short short short\n")
    (tmp_path / "cfg.toml").write_text(f'key = "{planted}"\n')  # not a log: not scanned

    logs, secrets, short = collect([tmp_path])
    hits = scan(logs, secrets)

    assert [p.name for p in logs] == ["keyway-a.log", "keyway-b.log", "keyway-c.log"]
    assert short == {"short"} and len("short") < MIN_SECRET_LEN
    assert sorted((h.file.name, h.secret) for h in hits) == [
        ("keyway-a.log", planted), ("keyway-b.log", planted)]
    message = report(hits) + repr(hits)
    assert planted not in message and planted[:12] not in message
    assert f"({len(planted)} chars)" in message and "keyway-a.log" in message
    assert describe(planted).startswith(repr(planted[:4]))


def test_no_secret_in_any_keyway_log(keyway_log_dir):
    dirs = log_dirs_from_env(keyway_log_dir)
    missing = [str(d) for d in dirs if not d.is_dir()]
    assert missing == [], f"KEYWAY_LOG_DIRS names missing directories: {missing}"
    extra = [os.environ["KEYWAY_SECRETS_FILE"]] if os.environ.get("KEYWAY_SECRETS_FILE") else []

    logs, secrets, short = collect(dirs, extra)

    where = ", ".join(map(str, dirs))
    assert logs, f"no keyway log (*.log) in {where}: nothing was scanned"
    assert secrets, f"no secret registered (secrets.txt) in {where}: nothing to look for"
    hits = scan(logs, secrets)
    if hits:
        pytest.fail(report(hits), pytrace=False)  # no assertion diff: it would show values
    print(f"secret scan: {len(logs)} logs, {len(secrets)} secrets, "
          f"{len(short)} shorter than {MIN_SECRET_LEN} chars skipped; no hit")
