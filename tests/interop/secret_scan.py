"""The secret registry the interop tests write to, and the scanner that reads keyway's logs.

A log directory holds keyway logs (`*.log`, one per keyway process) and may hold a `secrets.txt`
(one secret per line) naming what the tests of that run handed keyway or had it fetch. The Rust
tests write the same layout; `test_zz_secret_scan.py` scans them all at the end of the run.
"""

import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

SECRETS_FILE_NAME = "secrets.txt"
# Shorter values (placeholders such as "test") would match log text by chance.
MIN_SECRET_LEN = 8
PREFIX_LEN = 4


class SecretRegistry:
    """Appends every secret a test uses to `<log dir>/secrets.txt` and, when set, to the file
    named by KEYWAY_SECRETS_FILE. Thread-safe: fakes register what they issue from their own
    server threads."""

    def __init__(self, log_dir, extra_file=None):
        self.files = [Path(log_dir) / SECRETS_FILE_NAME]
        if extra_file:
            self.files.append(Path(extra_file))
        self._seen = set()
        self._lock = threading.Lock()

    def add(self, secret):
        if not isinstance(secret, str) or not secret or "\n" in secret or "\r" in secret:
            raise ValueError("a secret must be a non-empty single-line string")
        with self._lock:
            if secret in self._seen:
                return secret
            self._seen.add(secret)
            for f in self.files:
                f.parent.mkdir(parents=True, exist_ok=True)
                with open(f, "a", encoding="utf-8") as out:
                    out.write(secret + "\n")
        return secret

    def __contains__(self, secret):
        return secret in self._seen


def describe(secret):
    """How a secret is named in reports: never the whole value."""
    return f"{secret[:min(PREFIX_LEN, len(secret) // 4)]!r}… ({len(secret)} chars)"


def forms(secret):
    """The spellings a leaked secret may take in a log line."""
    out = {secret}
    out.add(urllib.parse.quote(secret, safe=""))  # a logged form body or query
    out.add(urllib.parse.quote_plus(secret, safe=""))
    out.add(secret.replace("/", "\\/"))  # JSON-escaped
    return out


@dataclass(frozen=True, repr=False)
class Hit:
    file: Path
    secret: str

    def __str__(self):
        return f"{self.file}: {describe(self.secret)}"

    __repr__ = __str__  # so no test report can print the secret


def read_secrets(files):
    secrets = set()
    for f in files:
        for line in Path(f).read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line:
                secrets.add(line)
    return secrets


def collect(dirs, extra_secret_files=()):
    """(log files, secrets, too-short secrets) for the given directories."""
    logs, secret_files = [], [Path(f) for f in extra_secret_files if Path(f).is_file()]
    for d in dirs:
        d = Path(d)
        logs.extend(sorted(p for p in d.glob("*.log") if p.is_file()))
        if (d / SECRETS_FILE_NAME).is_file():
            secret_files.append(d / SECRETS_FILE_NAME)
    secrets = read_secrets(secret_files)
    short = {s for s in secrets if len(s) < MIN_SECRET_LEN}
    return logs, secrets - short, short


def scan(logs, secrets):
    """Every (log file, secret) pair where the log contains the secret in any of its forms."""
    hits = []
    needles = {s: forms(s) for s in secrets}
    for log in logs:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
        for secret, spellings in needles.items():
            if any(n in text for n in spellings):
                hits.append(Hit(Path(log), secret))
    return hits


def log_dirs_from_env(interop_dir):
    """KEYWAY_LOG_DIRS (colon-separated) plus this run's interop log directory."""
    dirs = [Path(p) for p in os.environ.get("KEYWAY_LOG_DIRS", "").split(":") if p.strip()]
    return dirs + [Path(interop_dir)]
