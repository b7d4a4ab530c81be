"""Downloads over a loopback HTTP server that serves copies of the real data files."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import shutil
import socket
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnrepro.data import download, fetch, mnist, sources
from cnnrepro.data.fetch import RemoteFile
from cnnrepro.errors import InputError


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files from `server.root`, honouring single-range `Range: bytes=N-` requests.

    `/missing/...` returns 404. A path listed in `server.cut_once` sends only half of its body the first time
    it is requested and then closes the connection, as a dropped transfer does.
    """

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/missing/"):
            self.send_error(404)
            return
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        range_header = self.headers.get("Range")
        if range_header:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path in self.server.cut_once:
            self.server.cut_once.remove(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root = root
    httpd.requests = []
    httpd.cut_once = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    """Return a loopback URL on which nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/file"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served_pairs(shared_data, server):
    source = shared_data / "lfw" / "pairs.txt"
    shutil.copy(source, server.root / "pairs.txt")
    return source


def test_download_verifies_md5(served_pairs, server, tmp_path):
    remote = RemoteFile("pairs.txt", (f"{server.url}/pairs.txt",), md5=sources.LFW_PROTOCOL_MD5["pairs.txt"])
    path = fetch.download(remote, tmp_path / "cache", retries=0)
    assert path.read_bytes() == served_pairs.read_bytes(), "downloaded bytes equal the served file"
    assert not (tmp_path / "cache" / "pairs.txt.part").exists(), "no partial file is left"


def test_download_cached_file_not_refetched(served_pairs, server, tmp_path):
    remote = RemoteFile("pairs.txt", (f"{server.url}/pairs.txt",), md5=sources.LFW_PROTOCOL_MD5["pairs.txt"])
    fetch.download(remote, tmp_path / "cache", retries=0)
    fetch.download(remote, tmp_path / "cache", retries=0)
    assert len(server.requests) == 1, f"second call used the cache: {server.requests}"


def test_download_mirror_fallback(served_pairs, server, tmp_path):
    urls = (f"{server.url}/missing/pairs.txt", _closed_port_url(), f"{server.url}/pairs.txt")
    remote = RemoteFile("pairs.txt", urls, md5=sources.LFW_PROTOCOL_MD5["pairs.txt"])
    path = fetch.download(remote, tmp_path / "cache", retries=1)
    assert _md5(path) == sources.LFW_PROTOCOL_MD5["pairs.txt"], "the third URL delivered the file"
    paths = [p for p, _ in server.requests]
    assert paths == ["/missing/pairs.txt", "/pairs.txt"], f"404 moved on at once: {paths}"


def test_download_all_mirrors_fail(server, tmp_path):
    urls = (f"{server.url}/missing/a.txt", _closed_port_url())
    remote = RemoteFile("a.txt", urls, md5="0" * 32)
    with pytest.raises(InputError) as info:
        fetch.download(remote, tmp_path / "cache", retries=0, timeout=5)
    message = str(info.value)
    assert "HTTP 404" in message, message
    assert urls[1] in message, message
    assert "CNNREPRO_DATA_MIRROR" in message, message


def test_download_resumes_with_range(shared_data, server, tmp_path):
    source = shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(source, server.root / source.name)
    cache = tmp_path / "cache"
    cache.mkdir()
    data = source.read_bytes()
    (cache / (source.name + ".part")).write_bytes(data[:1000])
    remote = sources.mnist_remote(source.name)
    remote = RemoteFile(remote.name, (f"{server.url}/{source.name}",), content_md5=remote.content_md5)
    path = fetch.download(remote, cache, retries=0)
    assert path.read_bytes() == data, "resumed file equals the original"
    assert server.requests == [(f"/{source.name}", "bytes=1000-")], f"one ranged request: {server.requests}"


def test_download_dropped_connection_resumes(shared_data, server, tmp_path):
    source = shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"
    shutil.copy(source, server.root / source.name)
    server.cut_once.add(f"/{source.name}")
    remote = RemoteFile(source.name, (f"{server.url}/{source.name}",), content_md5=sources.MNIST_FILES[source.name][1])
    path = fetch.download(remote, tmp_path / "cache", retries=2)
    assert path.read_bytes() == source.read_bytes(), "the file is complete after the retry"
    ranges = [r for _, r in server.requests]
    assert ranges[0] is None, f"first request is plain: {ranges}"
    assert ranges[1] is not None and ranges[1].startswith("bytes="), f"retry asks for the rest: {ranges}"
    assert int(ranges[1][6:-1]) > 0, f"retry starts after the received bytes: {ranges}"


def test_download_checksum_mismatch(served_pairs, server, tmp_path):
    wrong = "0123456789abcdef0123456789abcdef"
    remote = RemoteFile("pairs.txt", (f"{server.url}/pairs.txt",), md5=wrong)
    with pytest.raises(InputError) as info:
        fetch.download(remote, tmp_path / "cache", retries=0)
    message = str(info.value)
    assert wrong in message, message
    assert sources.LFW_PROTOCOL_MD5["pairs.txt"] in message, f"actual sum is named: {message}"
    assert not any((tmp_path / "cache").iterdir()), "the bad file was deleted"


def test_download_content_md5_recompressed(shared_data, tmp_path):
    """MNIST mirrors recompress the .gz files; the decompressed MD5 still identifies them."""
    source = shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    remote = sources.mnist_remote(source.name)
    official_gz_md5 = sources.MNIST_FILES[source.name][0]
    assert _md5(source) != official_gz_md5, "the shared copy is recompressed"
    assert fetch.verify(source, remote, delete=False) == {"content_md5": remote.content_md5}, "content matches"
    broken = tmp_path / source.name
    broken.write_bytes(gzip.compress(gzip.decompress(source.read_bytes())[:-1]))
    with pytest.raises(InputError, match="decompressed content"):
        fetch.verify(broken, remote)
    assert not broken.exists(), "the mismatching file was deleted"


def test_prepare_mnist_online(shared_data, server, tmp_path, monkeypatch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, server.root / name)
    monkeypatch.setattr(sources, "MNIST_MIRRORS", (f"{server.url}/missing/", f"{server.url}/"))
    out = tmp_path / "mnist"
    out.mkdir()
    fetcher = download.Fetcher(cache=tmp_path / "cache", retries=0)
    prepared = download.prepare_mnist(out, SimpleNamespace(include_train=False), fetcher)
    images, labels = mnist.load(out, "test")
    assert images.shape == (10_000, 28, 28), f"{images.shape}"
    assert prepared.info["train_images"] is False, prepared.info


def test_prepare_orl_online(shared_data, server, tmp_path, monkeypatch):
    """The ORL archive has no published checksum, so the extracted images are checked instead."""
    archive = server.root / "att_faces.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((shared_data / "orl-faces" / "orl_faces").rglob("*")):
            bundle.write(path, "orl_faces/" + path.relative_to(shared_data / "orl-faces" / "orl_faces").as_posix())
    remote = RemoteFile("att_faces.zip", (f"{server.url}/att_faces.zip",), checked_after_extraction=True)
    monkeypatch.setattr(sources, "ORL_ARCHIVE", remote)
    out = tmp_path / "faces"
    out.mkdir()
    prepared = download.prepare_faces(out, SimpleNamespace(source="orl"), download.Fetcher(cache=tmp_path / "c"))
    assert prepared.info["identities"] == 40, prepared.info
    assert prepared.info["images"] == 400, prepared.info
    original = (shared_data / "orl-faces" / "orl_faces" / "s1" / "1.pgm").read_bytes()
    assert (out / "s1" / "1.pgm").read_bytes() == original, "pixels kept"
    assert not (out / "README").exists(), "non-image files are left out"


def test_prepare_orl_online_altered(shared_data, server, tmp_path, monkeypatch):
    archive = server.root / "att_faces.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((shared_data / "orl-faces" / "orl_faces").rglob("*.pgm")):
            data = path.read_bytes()
            if path.parent.name == "s7" and path.name == "3.pgm":
                data = data[:-1] + bytes([data[-1] ^ 1])
            bundle.writestr(path.relative_to(shared_data / "orl-faces" / "orl_faces").as_posix(), data)
    remote = RemoteFile("att_faces.zip", (f"{server.url}/att_faces.zip",), checked_after_extraction=True)
    monkeypatch.setattr(sources, "ORL_ARCHIVE", remote)
    out = tmp_path / "faces"
    out.mkdir()
    with pytest.raises(InputError, match="ORL images differ"):
        download.prepare_faces(out, SimpleNamespace(source="orl"), download.Fetcher(cache=tmp_path / "c"))


def test_prepare_imagenette_online(shared_data, server, tmp_path, monkeypatch):
    """An imagenette2-style archive (one wrapper folder) over HTTP, metadata from the archives folder."""
    archive = server.root / "imagenette2.tgz"
    nette = shared_data / "imagenette"
    with tarfile.open(archive, "w:gz") as tar:
        for part in ("train", "val"):
            tar.add(nette / part / "n01440764", arcname=f"imagenette2/{part}/n01440764")
        info = tarfile.TarInfo("imagenette2/noisy_imagenette.csv")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"a,b\n"))
    remote = RemoteFile("imagenette2.tgz", (f"{server.url}/imagenette2.tgz",), md5=_md5(archive))
    monkeypatch.setattr(sources, "IMAGENETTE_ARCHIVE", remote)
    out = tmp_path / "imagenet"
    out.mkdir()
    section = SimpleNamespace(source="imagenette", archives=str(shared_data / "imagenet-meta"))
    prepared = download.prepare_imagenet(out, section, download.Fetcher(cache=tmp_path / "cache", retries=0))
    expected_eval = sum(1 for p in nette.rglob("n01440764/ILSVRC2012_val_*"))
    assert prepared.info["eval_images"] == expected_eval, prepared.info
    assert prepared.info["classes"] == 1, prepared.info
    assert not (out / "noisy_imagenette.csv").exists(), "loose files of the archive are dropped"
