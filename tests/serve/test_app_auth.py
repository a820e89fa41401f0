"""The deployed app with API keys and a rate limit: 401 without a key, 429 over the limit, /healthz open."""

import httpx
import pytest

from rayapp.config import AppConfig


@pytest.fixture(scope="module")
def secured_url(ray_session, small_index, smollm2_dir, serve_port, tmp_path_factory):
    from ray import serve

    from rayapp.serve import APP_NAME, start_app

    keys = tmp_path_factory.mktemp("auth") / "keys"
    keys.write_text("key-one\nkey-two\n")
    cfg = AppConfig.model_validate({
        "generator": {"model": smollm2_dir, "max_new_tokens": 8},
        "retriever": {"top_k": 2},
        "auth": {"api_keys_file": str(keys), "rate_limit_per_minute": 3},
        "http": {"port": serve_port},
    })
    yield start_app(cfg, small_index.path)
    serve.delete(APP_NAME)


def test_keys_and_rate_limit_on_the_served_api(secured_url):
    body = {"question": "How do I parse JSON?", "top_k": 2}
    assert httpx.get(f"{secured_url}/healthz").status_code == 200
    assert httpx.get(f"{secured_url}/readyz", timeout=60).json()["stages"] == ["retriever", "generator", "embedder"]  # open
    r = httpx.post(f"{secured_url}/v1/retrieve", json=body, timeout=120)
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    ok = httpx.post(f"{secured_url}/v1/retrieve", json=body, headers={"Authorization": "Bearer key-one"}, timeout=120)
    assert ok.status_code == 200 and ok.json()["hits"]
    codes = [httpx.post(f"{secured_url}/v1/retrieve", json=body, headers={"X-API-Key": "key-one"}, timeout=120).status_code
             for _ in range(3)]
    assert codes[-1] == 429 and codes.count(200) == 2  # 3 per minute: the fourth call in a row is refused
    assert httpx.post(f"{secured_url}/v1/retrieve", json=body, headers={"X-API-Key": "key-two"},
                      timeout=120).status_code == 200
    assert httpx.get(f"{secured_url}/healthz").status_code == 200
