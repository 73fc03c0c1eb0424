"""Hostile clients against a real server on loopback: headers sent a byte at a time, a body
that never finishes, malformed multipart bodies, a flood of oversized uploads. Each is refused
(a closed connection, 408, 400, 413) while a well-behaved client's request, sent at the same
time, gets its answer; the server stays healthy afterwards."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from steelseg.service.app import ServiceSettings, create_app

from .conftest import make_predictor, planted, png_bytes, serve

IMAGE = png_bytes(planted()[0])


def good_request(url: str) -> int:
    return httpx.post(f"{url}/predict", files={"file": ("a.png", IMAGE, "image/png")}, timeout=30).status_code


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(1024):  # an error response may come before the close
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module")
def server():
    app = create_app(make_predictor(), ServiceSettings(body_timeout_s=1.0, header_timeout_s=1.0, max_upload_mb=1.0))
    with serve(app, header_timeout=1.0) as url:
        yield url


def test_headers_sent_a_byte_at_a_time_are_cut_off_while_others_are_served(server):
    slow = [connect(server) for _ in range(20)]  # 20 slowloris connections
    for sock in slow:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert good_request(server) == 200  # a normal client is served meanwhile
    start = time.monotonic()
    assert all(closed_by_server(sock, within=5) for sock in slow)
    assert time.monotonic() - start < 5
    for sock in slow:
        sock.close()


def test_a_connection_that_sends_nothing_is_closed(server):
    sock = connect(server)
    assert closed_by_server(sock, within=5)
    sock.close()


def test_a_keep_alive_connection_gets_the_deadline_again_for_its_next_request(server):
    with httpx.Client(timeout=10) as client:  # one connection, two requests within the deadline each
        assert client.post(f"{server}/predict", files={"file": ("a.png", IMAGE, "image/png")}).status_code == 200
        time.sleep(0.5)
        assert client.get(f"{server}/health").status_code == 200
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /hea")  # the next request's headers never finish
    assert closed_by_server(sock, within=5)
    sock.close()


def test_a_body_that_never_finishes_gets_408_while_others_are_served(server):
    sock = connect(server)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 50000\r\n\r\n" + IMAGE[:100]
    )
    assert good_request(server) == 200
    sock.settimeout(5)
    answer = b""
    while b"within" not in answer and (chunk := sock.recv(4096)):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + IMAGE[:50],
        ),
        ("multipart/form-data", b"no boundary given at all"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nno headers end here" * 10),
        ("multipart/form-data; boundary=xyz", b"--xyz--\r\n"),
    ],
    ids=["truncated-part", "no-boundary", "broken-part-headers", "no-parts"],
)
def test_malformed_multipart_is_a_4xx_not_a_crash(server, content_type, body):
    response = httpx.post(f"{server}/predict", content=body, headers={"content-type": content_type}, timeout=10)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_a_flood_of_oversized_uploads_does_not_starve_good_requests(server):
    big = b"\0" * 2_000_000  # over the 1 MB limit
    stop = threading.Event()
    refused = []

    def flood():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                refused.append(
                    client.post(f"{server}/predict", content=big, headers={"content-type": "image/png"}).status_code
                )

    with ThreadPoolExecutor(4) as pool:
        floods = [pool.submit(flood) for _ in range(3)]
        good = [good_request(server) for _ in range(5)]
        stop.set()
        for f in floods:
            f.result()
    assert good == [200] * 5
    assert refused and set(refused) == {413}
