#!/usr/bin/env bash
# make-jwt.sh DIR: an RSA key, its JWKS (DIR/jwks.json) and a long-lived RS256 token
# (DIR/token.txt) for the JWT load-test variant. Only openssl and python3's standard library.
set -euo pipefail
dir=$1
openssl genrsa -out "$dir/jwt-key.pem" 2048 2>/dev/null
python3 - "$dir" <<'PY'
import base64, json, subprocess, sys, time
d = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mod = subprocess.run(["openssl", "rsa", "-in", f"{d}/jwt-key.pem", "-noout", "-modulus"],
                     capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
n = bytes.fromhex(mod)
json.dump({"keys": [{"kty": "RSA", "kid": "lt-1", "use": "sig", "alg": "RS256",
                     "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}]},
          open(f"{d}/jwks.json", "w"))
header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "lt-1"}).encode())
claims = {"iss": "https://idp.loadtest/", "aud": "api://keyway", "sub": "loadtest",
          "exp": int(time.time()) + 86400, "roles": ["llm.user"], "portkey_workspace": "lt"}
payload = b64(json.dumps(claims).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{d}/jwt-key.pem"],
                     input=f"{header}.{payload}".encode(), capture_output=True, check=True).stdout
open(f"{d}/token.txt", "w").write(f"{header}.{payload}.{b64(sig)}")
PY
