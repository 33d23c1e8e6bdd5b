"""EnvProxies: which proxy, if any, the environment names for an endpoint."""

from regions._proxy import EnvProxies


def test_the_proxy_of_the_endpoints_scheme():
    proxies = EnvProxies({"http": "http://p:3128", "https": "http://s:3128"})
    assert proxies.for_url("https://acct.blob.core.windows.net/c") == "http://s:3128"
    assert proxies.for_url("http://127.0.0.1:8080/v1/AUTH_x") == "http://p:3128"
    assert EnvProxies({"http": "http://p:3128"}).for_url("https://acct.blob.core.windows.net") is None


def test_no_proxy_names_hosts_and_domain_suffixes():
    proxies = EnvProxies({"https": "http://s:3128", "no": "localhost, .internal.example,10.0.0.7"})
    assert proxies.for_url("https://localhost:8443/v1") is None
    assert proxies.for_url("https://swift.internal.example/v1") is None
    assert proxies.for_url("https://10.0.0.7/v1") is None
    assert proxies.for_url("https://user:pw@10.0.0.7:443/v1") is None  # the host, never the userinfo
    assert proxies.for_url("https://object-storage.c3j1.conoha.io/v1") == "http://s:3128"
    assert EnvProxies({"https": "http://s:3128", "no": "*"}).for_url("https://anything/") is None


def test_the_environment_is_read_when_made(monkeypatch):
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://s:3128")
    made = EnvProxies.read()
    monkeypatch.setenv("NO_PROXY", "*")
    assert made.for_url("https://acct.blob.core.windows.net") == "http://s:3128"
    assert EnvProxies.read().for_url("https://acct.blob.core.windows.net") is None
