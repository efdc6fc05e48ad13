"""For the tests: a real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1, small images in
OCI layouts to push to it, and small HTTP servers on loopback that record where credentials went."""
from __future__ import annotations

import contextlib
import datetime
import gzip
import hashlib
import http.client
import http.server
import io
import ipaddress
import json
import shutil
import socket
import socketserver
import ssl
import subprocess
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aegis_plugin.testutil.local_servers import free_port, running_process, serving
from aegis_plugin.core.oci import modelpack
from aegis_plugin.core.oci.layout import write_layout
from aegis_plugin.core.registry.push import LayoutImage

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


@contextlib.contextmanager
def running_registry(work: Path, login: Optional[Tuple[str, str]] = None) -> Iterator[str]:
    """A fresh registry with filesystem storage under `work`; yields `127.0.0.1:PORT`. With `login`, it
    requires HTTP Basic auth (an htpasswd file with a bcrypt hash, made by `htpasswd` from apache2-utils)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise AssertionError("docker-registry is not installed: run the tests with build-support/test.sh")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    auth = ""
    if login:
        htpasswd = subprocess.run(["htpasswd", "-Bbn", *login], check=True, capture_output=True, text=True).stdout
        (work / "htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: aegis-tests\n    path: {work / 'htpasswd'}\n"
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    with running_process([binary, "serve", str(config)], work / "registry.log",
                         lambda: _answers(f"http://127.0.0.1:{port}/v2/"), "docker-registry"):
        yield f"127.0.0.1:{port}"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        pass  # 401: up, and asking for a login
    return True


def make_layout(directory: Path, content: bytes, tag: str = "1.0.0", model_artifact: bool = False,
                platforms: Sequence[str] = (), compression: str = "gzip") -> LayoutImage:
    """An OCI layout holding one image with one layer (`/app/model/weights.safetensors` = `content`, where
    model images keep their weights), written by hand so that these tests need nothing but this package. With
    `model_artifact`, also a ModelPack artifact of that same layer, tagged `<tag>_modelpack`, as `package`
    writes one. With `platforms` (`linux/arm64`, ...), an image index over one image per platform, each with
    the same weights layer and a layer of its own (`/app/platform`), as `package` writes several platforms.
    `compression` is the layers': `gzip`, or `zstd` (as `layer_compression="zstd"` writes them)."""
    weights = _tar("app/model/weights.safetensors", content)
    layer = _compress(weights, compression)
    blobs = [layer]
    manifests = []
    for platform in platforms or [None]:
        tars = [weights] + ([_tar("app/platform", platform.encode())] if platform else [])
        layers = [layer] + [_compress(t, compression) for t in tars[1:]]
        architecture = platform.split("/")[1] if platform else "amd64"
        config = _json({"architecture": architecture, "os": "linux",
                        "rootfs": {"type": "layers", "diff_ids": [_digest(t) for t in tars]}})
        manifest = _json({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": f"application/vnd.oci.image.layer.v1.tar+{compression}", "digest": _digest(b),
                        "size": len(b)} for b in layers],
        })
        blobs += [*layers[1:], config, manifest]
        manifests.append({"mediaType": MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                          **({"platform": {"architecture": architecture, "os": "linux"}} if platform else {})})
    if platforms:
        index = _json({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
        blobs.append(index)
        top = {"mediaType": INDEX, "digest": _digest(index), "size": len(index)}
    else:
        top = manifests[0]
    entries = [{**top, "annotations": {"org.opencontainers.image.ref.name": tag}}]
    if model_artifact:
        model_config = _json({"descriptor": {"name": "fraud", "version": tag}, "config": {"format": "safetensors"},
                              "modelfs": {"type": "layers", "diffIds": [_digest(weights)]}})
        model_manifest = _json({
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": modelpack.ARTIFACT_TYPE,
            "config": {"mediaType": modelpack.MEDIA_TYPE_CONFIG, "digest": _digest(model_config),
                       "size": len(model_config)},
            "layers": [{"mediaType": f"application/vnd.cncf.model.weight.v1.tar+{compression}", "digest": _digest(layer),
                        "size": len(layer),
                        "annotations": {modelpack.ANNOTATION_FILEPATH: "app/model/weights.safetensors"}}],
        })
        blobs += [model_config, model_manifest]
        entries.append({"mediaType": MANIFEST, "artifactType": modelpack.ARTIFACT_TYPE,
                        "digest": _digest(model_manifest), "size": len(model_manifest),
                        "annotations": {"org.opencontainers.image.ref.name": f"{tag}{modelpack.REF_NAME_SUFFIX}"}})
    write_layout(directory, {_digest(b): b for b in blobs}, _json({"schemaVersion": 2, "manifests": entries}))
    return LayoutImage.read(str(directory))


def _compress(tar: bytes, compression: str) -> bytes:
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(tar)  # type: ignore[no-any-return]
    return gzip.compress(tar, mtime=0)


def _tar(name: str, content: bytes) -> bytes:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        archive.addfile(info, io.BytesIO(content))
    return tar.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def faulty_proxy(upstream: str, fail: Callable[[int], bool]) -> Iterator[str]:
    """A loopback HTTP proxy in front of the registry `upstream` (host:port) that answers 500 instead of
    forwarding the n-th blob upload (`PUT` of an upload session, counted from 1) when `fail(n)`; yields its
    own `127.0.0.1:PORT`. The Host header is passed on, so the registry's Location headers point back here."""
    uploads = [0]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "PUT" and "/blobs/uploads/" in self.path:
                with lock:
                    uploads[0] += 1
                    n = uploads[0]
                if fail(n):
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            connection = http.client.HTTPConnection(upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"127.0.0.1:{port}"


Answer = Callable[[str, Optional[str]], Tuple[int, Dict[str, str], bytes]]
Seen = List[Tuple[str, str, Optional[str]]]  # (scheme, path, Authorization header) of each request


@contextlib.contextmanager
def recording_server(answer: Answer, host: str = "127.0.0.1",
                     tls: Optional[ssl.SSLContext] = None) -> Iterator[Tuple[str, Seen]]:
    """An HTTP server on the loopback address `host` (any of 127.0.0.0/8 stands for another host) that records
    each request and replies `answer(path, authorization)` = (status, headers, body); yields `host:PORT` and
    the record. With `tls`, a connection that opens with a TLS handshake is served over TLS and any other in
    plain HTTP, on the same port: `https://host:PORT` and `http://host:PORT` are then one host, two origins."""
    seen: Seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            authorization = self.headers.get("Authorization")
            seen.append(("https" if isinstance(self.connection, ssl.SSLSocket) else "http", self.path, authorization))
            status, headers, body = answer(self.path, authorization)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _reply

        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def server_bind(self) -> None:  # without HTTPServer's reverse DNS lookup of `host`
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = host, self.server_address[1]

        def get_request(self):  # type: ignore[no-untyped-def]
            connection, address = super().get_request()
            if tls is not None and connection.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS ClientHello
                connection = tls.wrap_socket(connection, server_side=True)
            return connection, address

    with serving(Server((host, 0), Handler)) as port:
        yield f"{host}:{port}", seen


def self_signed_tls(directory: Path, ip: str = "127.0.0.1") -> Tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for the address `ip`, and the certificate's
    file, for clients to trust (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
