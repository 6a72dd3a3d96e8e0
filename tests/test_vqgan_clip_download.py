"""python -m vqgan_clip.download against a local HTTP server on 127.0.0.1: complete, resumed, offline."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lab import LabError
from tests.test_vqgan_clip_loop import write_tiny_models


class _Server(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_next: set[str] = set()   # paths whose next full transfer stops half-way
    requests: list[tuple[str, str]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range", "")))
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path in self.cut_next:  # announce everything, send half, hang up
            self.cut_next.discard(self.path)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path, monkeypatch):
    import vqgan_clip.download as download

    models = write_tiny_models(tmp_path / "models")
    _Server.files = {"/vqgan.yaml": (models / "vqgan.yaml").read_bytes(), "/last.ckpt": (models / "vqgan.pt").read_bytes()}
    _Server.cut_next, _Server.requests = set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    checksum = hashlib.sha256(_Server.files["/last.ckpt"]).hexdigest()
    monkeypatch.setitem(download.SOURCES, "vqgan_tiny", [("vqgan_tiny.yaml", f"{base}/vqgan.yaml", ""),
                                                         ("vqgan_tiny.ckpt", f"{base}/last.ckpt", checksum)])
    yield download, tmp_path / "checkpoints"
    httpd.shutdown()


def test_download_complete_checks_and_loads(server):
    download, folder = server
    written = download.main(["vqgan_tiny", "--folder", str(folder)])
    assert [p.name for p in written] == ["vqgan_tiny.yaml", "vqgan_tiny.ckpt"]
    assert (folder / "vqgan_tiny.ckpt").read_bytes() == _Server.files["/last.ckpt"]
    assert not list(folder.glob("*.part"))
    # A second run finds the files and fetches nothing.
    count = len(_Server.requests)
    download.main(["vqgan_tiny", "--folder", str(folder)])
    assert len(_Server.requests) == count


def test_interrupted_download_resumes_where_it_stopped(server):
    download, folder = server
    _Server.cut_next.add("/last.ckpt")
    with pytest.raises(LabError, match="run the same command again"):
        download.download("vqgan_tiny", folder)
    part = folder / "vqgan_tiny.ckpt.part"
    size = len(_Server.files["/last.ckpt"])
    assert 0 < part.stat().st_size < size and not (folder / "vqgan_tiny.ckpt").exists()
    download.download("vqgan_tiny", folder)
    assert (folder / "vqgan_tiny.ckpt").read_bytes() == _Server.files["/last.ckpt"]
    assert _Server.requests[-1] == ("/last.ckpt", f"bytes={size // 2}-")


def test_a_corrupted_file_fails_its_checksum_and_is_removed(server):
    download, folder = server
    folder.mkdir(parents=True)
    (folder / "vqgan_tiny.ckpt.part").write_bytes(b"x" * 10)  # a wrong start that the resume would keep
    with pytest.raises(LabError, match="does not match its published SHA-256"):
        download.download("vqgan_tiny", folder)
    assert not (folder / "vqgan_tiny.ckpt.part").exists()


def test_offline_fails_at_once_naming_the_url(tmp_path, monkeypatch):
    import vqgan_clip.download as download

    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ViT-B-32.pt"
    monkeypatch.setitem(download.SOURCES, "ViT-B-32", [("ViT-B-32.pt", url, "")])
    started = time.time()
    with pytest.raises(LabError, match=f"cannot download {url}.*Fetch that URL by hand"):
        download.download("ViT-B-32", tmp_path)
    assert time.time() - started < 10
    with pytest.raises(SystemExit) as exit_info:
        download.main(["vqgan_imagenet_f16_9"])
    assert exit_info.value.code == 2
