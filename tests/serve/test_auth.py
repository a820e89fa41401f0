"""API keys (401) and per-key rate limits (429): the ingress's middleware on a small FastAPI app."""

import hashlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rayapp.config import AuthConfig
from rayapp.serve._auth import Guard, KeyStore, RateLimiter, guard_dispatch


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def client_for(guard):
    app = FastAPI()
    app.middleware("http")(guard_dispatch(lambda: guard))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/retrieve")
    def retrieve():
        return {"hits": []}

    return TestClient(app)


def test_keys_from_env_and_hashed_file(tmp_path):
    hashed = hashlib.sha256(b"file-key-2").hexdigest()
    (tmp_path / "keys").write_text(f"# comment\nfile-key-1\n\nsha256:{hashed}\n")
    store = KeyStore.from_config(AuthConfig(api_keys_env="K", api_keys_file=tmp_path / "keys"), {"K": "a, b"})
    assert len(store) == 4
    assert all(store.check(k) for k in ("a", "b", "file-key-1", "file-key-2"))
    assert store.check("c") is None and store.check("sha256:" + hashed) is None
    assert store.check("a") != store.check("b") and len(store.check("a")) == 12
    with pytest.raises(ValueError, match="environment variable K is unset or empty"):
        KeyStore.from_config(AuthConfig(api_keys_env="K"), {})
    (tmp_path / "bad").write_text("sha256:abc\n")
    with pytest.raises(ValueError, match="bad:1: 'sha256:' must be followed by 64 hex digits"):
        KeyStore.from_config(AuthConfig(api_keys_file=tmp_path / "bad"), {})


def test_token_bucket_refills():
    clock = Clock()
    lim = RateLimiter(per_minute=2, clock=clock)
    assert lim.allow("k") == (True, 0) and lim.allow("k") == (True, 0)
    ok, wait = lim.allow("k")
    assert not ok and wait == 30  # one token per 30 s
    assert lim.allow("other")[0]  # buckets are per key
    clock.t = 30.0
    assert lim.allow("k")[0] and not lim.allow("k")[0]


def test_http_401_without_a_valid_key_and_open_healthz():
    c = client_for(Guard(AuthConfig(api_keys_env="K"), {"K": "s3cret"}))
    assert c.get("/healthz").status_code == 200
    r = c.post("/v1/retrieve")
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/v1/retrieve", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/retrieve", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.post("/v1/retrieve", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_http_429_per_key_with_retry_after():
    clock = Clock()
    c = client_for(Guard(AuthConfig(api_keys_env="K", rate_limit_per_minute=1), {"K": "a,b"}, clock=clock))
    assert c.post("/v1/retrieve", headers={"X-API-Key": "a"}).status_code == 200
    r = c.post("/v1/retrieve", headers={"X-API-Key": "a"})
    assert r.status_code == 429 and r.headers["retry-after"] == "60" and "rate limit" in r.json()["error"]["message"]
    assert c.post("/v1/retrieve", headers={"X-API-Key": "b"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # open paths are not limited
    clock.t = 60.0
    assert c.post("/v1/retrieve", headers={"X-API-Key": "a"}).status_code == 200


def test_no_auth_configured_passes_everything():
    assert client_for(None).post("/v1/retrieve").status_code == 200
    assert client_for(Guard(AuthConfig(), {})).post("/v1/retrieve").status_code == 200
