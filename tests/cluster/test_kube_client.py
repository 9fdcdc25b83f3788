"""The operator's client honours what a kubeconfig asks of its connections: an HTTP proxy
(a real CONNECT tunnel here), no_proxy, and the TLS server name it verifies."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from trainwright.controller.kube import Kube, connection_options, load_configuration


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that counts the tunnels it opened."""

    def __init__(self):
        self.tunnels: list[str] = []

    async def __aenter__(self) -> "ConnectProxy":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, _ = (await reader.readline()).decode().split(" ", 2)
        while (await reader.readline()).strip():
            pass  # the request's headers
        if method != "CONNECT":
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def configured(control_plane, **changes):
    configuration = load_configuration(str(control_plane.kubeconfig))
    for key, value in changes.items():
        setattr(configuration, key, value)
    return configuration


async def namespaces_seen(configuration) -> int:
    async with Kube(configuration) as kube:
        return len((await kube.request("GET", "/api/v1/namespaces"))["items"])


def test_requests_go_through_the_kubeconfig_proxy_unless_no_proxy_covers_the_server(control_plane):
    async def scenario():
        async with ConnectProxy() as proxy:
            assert await namespaces_seen(configured(control_plane, proxy=proxy.url)) > 0
            port = control_plane.server.rsplit(":", 1)[1]
            assert proxy.tunnels == [f"127.0.0.1:{port}"]

            assert await namespaces_seen(configured(control_plane, proxy=proxy.url, no_proxy="127.0.0.1")) > 0
            assert len(proxy.tunnels) == 1  # straight to the server this time
    asyncio.run(scenario())


def test_the_server_certificate_is_verified_against_the_kubeconfig_tls_server_name(control_plane):
    # the API server's certificate names kubernetes.default but not example.invalid
    assert asyncio.run(namespaces_seen(configured(control_plane, tls_server_name="kubernetes.default"))) > 0
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(namespaces_seen(configured(control_plane, tls_server_name="example.invalid")))


def test_a_socks_proxy_is_refused_before_anything_connects(control_plane):
    with pytest.raises(ValueError, match="SOCKS proxies are not supported"):
        connection_options(configured(control_plane, proxy="socks5://127.0.0.1:1080"))
