"""The inventory of an image: everything its SBOMs describe, as one JSON document.

The package rule gathers it from the build's own records (the Debian lock and the base layer, the runtime
lock and the deps layer, the model files and card, the app layer) and hands it to this package as JSON::

    {
      "image":  {"name": "aegis/fraud-detector", "version": "1.0.0", "created": 1764000000,
                 "git_sha": "<40 hex>[-dirty]", "source_url": "https://...", "architecture": "amd64",
                 "os": "linux", "creator" (optional: the organisation that makes the image and signs the SBOMs
                 with the tool): {"name", "email" (or null), "url" (or null)}},
      "debian": [{"name", "version", "architecture", "source", "source_version", "sha256" (of the .deb),
                  "maintainer": "Name <email>" (the control file's Maintainer),
                  "licenses": ["GPL-2+", ...] (DEP-5 short names; may be empty),
                  "copyright": ["1995-2013 Jean-loup Gailly and Mark Adler", ...] (may be empty),
                  "files": ["/usr/bin/x", ...],
                  "copyright_file" (optional): "/usr/share/doc/x/copyright" (where those were read; "" if none),
                  "sha512" (optional): of the .deb, its distribution file}],
      "python": [{"name" (PEP 503 normalised), "version", "wheel": "numpy-2.4.6-cp311-...whl",
                  "hashes": ["sha256:<hex>", ...] (the lock's hashes of the installed wheel),
                  "license": "BSD-3-Clause" or null, "authors": ["Name <email>" | "email" | "Name", ...],
                  "maintainers": [...] (both in the metadata's order), "copyright": [notices of its license
                  files, else of its text files; empty: none in any],
                  "files": ["/app/site-packages/numpy/__init__.py", ...],
                  "wheel_sha256", "wheel_sha512" (optional): of the installed wheel, its distribution file}],
      "model":  {"model_id", "version", "framework", "framework_version", "accelerator",
                 "files": [{"path": "/app/model/weights.safetensors", "sha256", "sha1", "size",
                            "role": "weights" | "tokenizer" | "model_card" | "config" | "other"}],
                 "card": {"sections": {"Intended use": "...", ...}, "fields": {"license": "Apache-2.0", ...}},
                 "registry" (optional: the files came from a model registry): {"source": "models:/fraud/3",
                     "run_id", "experiment", "registered_model", "model_version", "git_commit" (of the training
                     code), "tracking_uri" (each may be ""), "params": {name: str}, "metrics": {name: number}},
                 "lineage" (optional: from the model_package's lineage fields): {
                     "datasets": [{"role": "training" | "evaluation", "name": "train.csv", "location" (a path in
                         the repository or the URL it is downloaded from), "sha256", "size"}],
                     "base_model": "pkg:huggingface/org/name@<revision>" or null,
                     "training": {"script": "models/x/train.py", "sha256"} or null}},
      "app":    {"files": [{"path": "/app/server/handler.py", "sha256", "sha1"}, ...]}
    }

Every file of the model and the app carries a ``sha1`` besides its ``sha256``: SPDX 2.3 requires a SHA1
checksum on every File element (spdx-tools rejects a file without one).

``from_dict`` checks every field and fails with one line naming the field (``inventory: debian[2].sha256:
...``); it also puts every list into a canonical order, so the documents do not depend on input order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

from aegis_plugin.core.errors import AegisError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA512 = re.compile(r"^[0-9a-f]{128}$")
_GIT_SHA = re.compile(r"^[0-9a-f]{40}(?:-dirty)?$")
_PYPI_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")

MODEL_FILE_ROLES = ("weights", "tokenizer", "model_card", "config", "other")
DATASET_ROLES = ("training", "evaluation")


class InventoryError(AegisError, ValueError):
    """The inventory is malformed; the message is one line naming the field."""


@dataclass(frozen=True)
class Creator:
    """The organisation named beside the tool as the SBOMs' creator (``[aegis-sbom].organization``)."""

    name: str
    email: Optional[str]
    url: Optional[str]


@dataclass(frozen=True)
class Image:
    name: str  # repository name, e.g. "aegis/fraud-detector"
    version: str  # the image's tag
    created: int  # epoch seconds: the source revision time, used for every timestamp
    git_sha: str  # 40 hex digits, with "-dirty" when the inputs differ from that commit
    source_url: Optional[str]
    architecture: str  # OCI platform architecture, e.g. "amd64"
    os: str  # OCI platform os, e.g. "linux"
    creator: Optional[Creator] = None


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    sha256: str  # of the .deb
    maintainer: str  # "Name <email>"
    licenses: Tuple[str, ...]  # DEP-5 short names from the copyright file, sorted
    copyright: Tuple[str, ...]  # notices from the copyright file, sorted
    files: Tuple[str, ...]  # absolute paths in the image, sorted
    copyright_file: str = ""  # the copyright file's path in the image; "" when the package ships none
    sha512: str = ""  # of the .deb; "" when the layer step did not report it

    @property
    def file_hashes(self) -> Tuple[Tuple[str, str], ...]:
        """(algorithm, hex) of the .deb: its sha256, and its sha512 when known."""
        return (("sha256", self.sha256),) + ((("sha512", self.sha512),) if self.sha512 else ())

    @property
    def deb_filename(self) -> str:
        """The .deb's name as Debian's archive spells it (the epoch is not part of file names)."""
        version = self.version.split(":", 1)[1] if ":" in self.version else self.version
        return f"{self.name}_{version}_{self.architecture}.deb"


@dataclass(frozen=True)
class PythonDist:
    name: str  # PEP 503 normalised
    version: str
    wheel: str  # the installed wheel's file name
    hashes: Tuple[str, ...]  # "sha256:<hex>", sorted
    license: Optional[str]  # an SPDX expression or free text from the metadata; None when undeclared
    authors: Tuple[str, ...]  # in the metadata's order: the first maintainer (else author) is the supplier
    maintainers: Tuple[str, ...]
    copyright: Tuple[str, ...]  # notices from its license files, else its text files; empty: none in any
    files: Tuple[str, ...]
    wheel_sha256: str = ""  # of the installed wheel (one of `hashes`); "" when the layer step did not report it
    wheel_sha512: str = ""

    @property
    def sha256s(self) -> Tuple[str, ...]:
        return tuple(h.split(":", 1)[1] for h in self.hashes)

    @property
    def file_hashes(self) -> Tuple[Tuple[str, str], ...]:
        """(algorithm, hex) of the installed wheel when the layer step reported it; else the lock's sha256 of
        each file it pins for the release (one of which was installed)."""
        if self.wheel_sha256:
            return (("sha256", self.wheel_sha256),) + ((("sha512", self.wheel_sha512),) if self.wheel_sha512 else ())
        return tuple(("sha256", h) for h in self.sha256s)


@dataclass(frozen=True)
class ModelFile:
    path: str
    sha256: str
    sha1: str
    size: int
    role: str  # one of MODEL_FILE_ROLES


def _section_key(title: str) -> str:
    """Headings and field names compare without case, punctuation or a leading number (``3. Out-of-scope
    use`` is ``out of scope use``), as aegis_plugin/core/model/model_card.py normalises them."""
    text = re.sub(r"^\s*\d+[.)]?\s+", "", title.lower())
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


@dataclass(frozen=True)
class ModelCard:
    sections: Mapping[str, str]  # heading (as written) -> Markdown body
    fields: Mapping[str, str]  # "key: value" facts from the card, e.g. license, owner, task

    def section(self, *titles: str) -> Optional[str]:
        """The body of the first section whose heading matches one of ``titles`` (see ``_section_key``)."""
        by_key = {_section_key(title): body for title, body in self.sections.items()}
        for title in titles:
            body = by_key.get(_section_key(title))
            if body is not None and body.strip():
                return body
        return None

    def field(self, *names: str) -> Optional[str]:
        by_key = {_section_key(name): value for name, value in self.fields.items()}
        for name in names:
            value = by_key.get(_section_key(name))
            if value is not None and value.strip():
                return value.strip()
        return None


@dataclass(frozen=True)
class Registry:
    """Where the model files came from, when a model registry (an MLflow run) served them."""

    source: str
    run_id: str
    experiment: str
    registered_model: str
    model_version: str
    git_commit: str
    tracking_uri: str
    params: Tuple[Tuple[str, str], ...]  # sorted by name
    metrics: Tuple[Tuple[str, float], ...]  # sorted by name


@dataclass(frozen=True)
class Dataset:
    role: str  # one of DATASET_ROLES
    name: str
    location: str  # a path in the repository, or the URL the file is downloaded from
    sha256: str
    size: int


@dataclass(frozen=True)
class TrainingRun:
    script: str  # path in the repository; its revision is the image's git_sha
    sha256: str


@dataclass(frozen=True)
class Lineage:
    datasets: Tuple[Dataset, ...]  # sorted by (role, location)
    base_model: Optional[str]  # a package URL pinned to a version
    training: Optional[TrainingRun]


@dataclass(frozen=True)
class Model:
    model_id: str
    version: str
    framework: str
    framework_version: str
    accelerator: str
    files: Tuple[ModelFile, ...]  # sorted by path
    card: ModelCard
    registry: Optional[Registry] = None
    lineage: Optional[Lineage] = None


@dataclass(frozen=True)
class AppFile:
    path: str
    sha256: str
    sha1: str


@dataclass(frozen=True)
class App:
    files: Tuple[AppFile, ...]  # sorted by path


@dataclass(frozen=True)
class Inventory:
    image: Image
    debian: Tuple[DebianPackage, ...]  # sorted by (name, architecture)
    python: Tuple[PythonDist, ...]  # sorted by name
    model: Model
    app: App


def load(path: str) -> Inventory:
    """Read and check an inventory JSON file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise InventoryError(f"inventory: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise InventoryError(f"inventory: {path} is not valid JSON: {e}") from None
    return from_dict(data)


class _Reader:
    """One JSON object being checked; ``where`` names it in errors (e.g. ``debian[2]``)."""

    def __init__(self, data: Any, where: str, keys: Sequence[str], optional: Sequence[str] = ()) -> None:
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected an object, got {_kind(data)}")
        unknown = sorted(set(data) - set(keys) - set(optional))
        if unknown:
            self.fail(f"unknown key(s) {', '.join(map(repr, unknown))}")
        missing = [key for key in keys if key not in data]
        if missing:
            self.fail(f"missing key(s) {', '.join(map(repr, missing))}")
        self.data = data

    def fail(self, message: str, key: Optional[str] = None) -> None:
        where = f"{self.where}.{key}" if key and self.where else (key or self.where)
        raise InventoryError(f"inventory: {where}: {message}" if where else f"inventory: {message}")

    def text(self, key: str, pattern: Optional["re.Pattern[str]"] = None, what: str = "") -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(f"expected a non-empty string, got {_show(value)}", key)
        if value != value.strip() or "\n" in value:
            self.fail(f"must not have surrounding whitespace or newlines: {value!r}", key)
        if pattern is not None and not pattern.match(value):
            self.fail(f"expected {what}, got {value!r}", key)
        return value

    def optional_str(self, key: str) -> Optional[str]:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(f"expected a string or null, got {_show(value)}", key)
        return value.strip() or None

    def optional_text(self, key: str, pattern: "re.Pattern[str]", what: str) -> str:
        """`text(key, ...)` when the key is present; "" when it is absent."""
        return self.text(key, pattern, what) if key in self.data else ""

    def integer(self, key: str) -> int:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(f"expected a non-negative integer, got {_show(value)}", key)
        return value

    def array(self, key: str) -> list:
        value = self.data[key]
        if not isinstance(value, list):
            self.fail(f"expected a list, got {_kind(value)}", key)
        return value

    def strings(self, key: str, pattern: Optional["re.Pattern[str]"] = None, what: str = "") -> Tuple[str, ...]:
        items = self.array(key)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"expected a non-empty string, got {_show(item)}", f"{key}[{i}]")
            if pattern is not None and not pattern.match(item):
                self.fail(f"expected {what}, got {item!r}", f"{key}[{i}]")
        return tuple(sorted(set(item.strip() for item in items)))

    def ordered_strings(self, key: str) -> Tuple[str, ...]:
        """Like ``strings`` but in the given order (where order carries meaning), duplicates dropped."""
        items = self.array(key)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip() or "\n" in item:
                self.fail(f"expected a non-empty one-line string, got {_show(item)}", f"{key}[{i}]")
        return tuple(dict.fromkeys(item.strip() for item in items))

    def paths(self, key: str) -> Tuple[str, ...]:
        items = self.strings(key)
        for i, path in enumerate(items):
            _check_path(self, f"{key}[{i}]", path)
        return items

    def mapping(self, key: str) -> dict:
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(f"expected an object, got {_kind(value)}", key)
        for name, item in value.items():
            if not isinstance(item, str):
                self.fail(f"expected a string, got {_show(item)}", f"{key}[{name!r}]")
        return dict(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool)) else _kind(value)


def _check_path(reader: _Reader, key: str, path: str) -> None:
    parts = path.split("/")
    if not path.startswith("/") or path == "/" or any(p in ("", ".", "..") for p in parts[1:]):
        reader.fail(f"expected a normalised absolute path in the image, got {path!r}", key)


def _image(data: Any) -> Image:
    r = _Reader(data, "image", ("name", "version", "created", "git_sha", "architecture", "os"),
                optional=("source_url", "creator"))
    return Image(
        name=r.text("name"),
        version=r.text("version"),
        created=r.integer("created"),
        git_sha=r.text("git_sha", _GIT_SHA, "40 lowercase hex digits, optionally followed by -dirty"),
        source_url=r.optional_str("source_url"),
        architecture=r.text("architecture"),
        os=r.text("os"),
        creator=_creator(data["creator"]) if data.get("creator") is not None else None,
    )


def _creator(data: Any) -> Creator:
    r = _Reader(data, "image.creator", ("name",), optional=("email", "url"))
    return Creator(name=r.text("name"), email=r.optional_str("email"), url=r.optional_str("url"))


def _debian(data: Any, where: str) -> DebianPackage:
    r = _Reader(data, where, ("name", "version", "architecture", "source", "source_version", "sha256",
                              "maintainer", "licenses", "copyright", "files"), optional=("copyright_file", "sha512"))
    return DebianPackage(
        name=r.text("name"),
        version=r.text("version"),
        architecture=r.text("architecture"),
        source=r.text("source"),
        source_version=r.text("source_version"),
        sha256=r.text("sha256", _SHA256, "64 lowercase hex digits"),
        maintainer=r.text("maintainer"),
        licenses=r.strings("licenses"),
        copyright=r.strings("copyright"),
        files=r.paths("files"),
        copyright_file=r.optional_str("copyright_file") or "",
        sha512=r.optional_text("sha512", _SHA512, "128 lowercase hex digits"),
    )


def _python(data: Any, where: str) -> PythonDist:
    r = _Reader(data, where, ("name", "version", "wheel", "hashes", "license", "authors", "maintainers",
                              "copyright", "files"), optional=("wheel_sha256", "wheel_sha512"))
    name = r.text("name", _PYPI_NAME, "a PEP 503 normalised name (lowercase, runs of -_. as one -)")
    wheel = r.text("wheel")
    if not wheel.endswith(".whl") or "/" in wheel:
        r.fail(f"expected a wheel file name (*.whl), got {wheel!r}", "wheel")
    hashes = r.strings("hashes", _HASH, '"sha256:" and 64 lowercase hex digits')
    if not hashes:
        r.fail("expected at least one hash", "hashes")
    return PythonDist(
        name=name,
        version=r.text("version"),
        wheel=wheel,
        hashes=hashes,
        license=r.optional_str("license"),
        authors=r.ordered_strings("authors"),
        maintainers=r.ordered_strings("maintainers"),
        copyright=r.strings("copyright"),
        files=r.paths("files"),
        wheel_sha256=r.optional_text("wheel_sha256", _SHA256, "64 lowercase hex digits"),
        wheel_sha512=r.optional_text("wheel_sha512", _SHA512, "128 lowercase hex digits"),
    )


def _model_file(data: Any, where: str) -> ModelFile:
    r = _Reader(data, where, ("path", "sha256", "sha1", "size", "role"))
    path = r.text("path")
    _check_path(r, "path", path)
    role = r.text("role")
    if role not in MODEL_FILE_ROLES:
        r.fail(f"expected one of {', '.join(MODEL_FILE_ROLES)}, got {role!r}", "role")
    return ModelFile(
        path=path,
        sha256=r.text("sha256", _SHA256, "64 lowercase hex digits"),
        sha1=r.text("sha1", _SHA1, "40 lowercase hex digits (SPDX 2.3 requires a SHA1 for every file)"),
        size=r.integer("size"),
        role=role,
    )


def _app_file(data: Any, where: str) -> AppFile:
    r = _Reader(data, where, ("path", "sha256", "sha1"))
    path = r.text("path")
    _check_path(r, "path", path)
    return AppFile(
        path=path,
        sha256=r.text("sha256", _SHA256, "64 lowercase hex digits"),
        sha1=r.text("sha1", _SHA1, "40 lowercase hex digits (SPDX 2.3 requires a SHA1 for every file)"),
    )


def _model(data: Any) -> Model:
    r = _Reader(data, "model", ("model_id", "version", "framework", "framework_version", "accelerator",
                                "files", "card"), optional=("registry", "lineage"))
    files = tuple(_model_file(item, f"model.files[{i}]") for i, item in enumerate(r.array("files")))
    if not any(f.role == "weights" for f in files):
        r.fail("no file with role 'weights'", "files")
    card = _Reader(r.data["card"], "model.card", ("sections", "fields"))
    return Model(
        model_id=r.text("model_id"),
        version=r.text("version"),
        framework=r.text("framework"),
        framework_version=r.text("framework_version"),
        accelerator=r.text("accelerator"),
        files=tuple(sorted(_unique(files, lambda f: f.path, "model.files", "path"), key=lambda f: f.path)),
        card=ModelCard(sections=card.mapping("sections"), fields=card.mapping("fields")),
        registry=_registry(r.data["registry"]) if r.data.get("registry") is not None else None,
        lineage=_lineage(r.data["lineage"]) if r.data.get("lineage") is not None else None,
    )


def _lineage(data: Any) -> Lineage:
    r = _Reader(data, "model.lineage", ("datasets", "base_model", "training"))
    datasets = []
    for i, item in enumerate(r.array("datasets")):
        d = _Reader(item, f"model.lineage.datasets[{i}]", ("role", "name", "location", "sha256", "size"))
        role = d.text("role")
        if role not in DATASET_ROLES:
            d.fail(f"expected one of {', '.join(DATASET_ROLES)}, got {role!r}", "role")
        datasets.append(Dataset(role=role, name=d.text("name"), location=d.text("location"),
                                sha256=d.text("sha256", _SHA256, "64 lowercase hex digits"), size=d.integer("size")))
    _unique(datasets, lambda d: (d.role, d.location), "model.lineage.datasets", "dataset")
    training = None
    if r.data["training"] is not None:
        t = _Reader(r.data["training"], "model.lineage.training", ("script", "sha256"))
        training = TrainingRun(script=t.text("script"), sha256=t.text("sha256", _SHA256, "64 lowercase hex digits"))
    return Lineage(
        datasets=tuple(sorted(datasets, key=lambda d: (d.role, d.location))),
        base_model=r.optional_str("base_model"),
        training=training,
    )


_REGISTRY_TEXT = ("experiment", "registered_model", "model_version", "git_commit", "tracking_uri")


def _registry(data: Any) -> Registry:
    r = _Reader(data, "model.registry", ("source", "run_id", *_REGISTRY_TEXT, "params", "metrics"))
    metrics = r.data["metrics"]
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
        for v in metrics.values()
    ):
        r.fail("expected an object of finite numbers", "metrics")
    texts = {key: r.optional_str(key) or "" for key in _REGISTRY_TEXT}
    return Registry(
        source=r.text("source"),
        run_id=r.text("run_id"),
        params=tuple(sorted(r.mapping("params").items())),
        metrics=tuple(sorted((k, float(v)) for k, v in metrics.items())),
        **texts,
    )


def _app(data: Any) -> App:
    r = _Reader(data, "app", ("files",))
    files = tuple(_app_file(item, f"app.files[{i}]") for i, item in enumerate(r.array("files")))
    if not files:
        r.fail("expected at least one file", "files")
    return App(files=tuple(sorted(_unique(files, lambda f: f.path, "app.files", "path"), key=lambda f: f.path)))


def _unique(items: Sequence[Any], key: Any, where: str, what: str) -> Sequence[Any]:
    seen: dict = {}
    for item in items:
        k = key(item)
        if k in seen:
            raise InventoryError(f"inventory: {where}: {what} {k!r} appears twice")
        seen[k] = item
    return items


def from_dict(data: Any) -> Inventory:
    """Check ``data`` (parsed inventory JSON) and return it in canonical order."""
    top = _Reader(data, "", ("image", "debian", "python", "model", "app"))
    image = _image(data["image"])
    debian = tuple(_debian(item, f"debian[{i}]") for i, item in enumerate(top.array("debian")))
    python = tuple(_python(item, f"python[{i}]") for i, item in enumerate(top.array("python")))
    _unique(debian, lambda p: f"{p.name}:{p.architecture}", "debian", "package")
    _unique(python, lambda p: p.name, "python", "distribution")
    model = _model(data["model"])
    app = _app(data["app"])
    _unique(model.files + app.files, lambda f: f.path, "model.files and app.files", "path")  # type: ignore
    return Inventory(
        image=image,
        debian=tuple(sorted(debian, key=lambda p: (p.name, p.architecture))),
        python=tuple(sorted(python, key=lambda p: p.name)),
        model=model,
        app=app,
    )
