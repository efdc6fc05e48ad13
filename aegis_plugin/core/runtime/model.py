"""The model: the handler loaded from the image, its signature and manifest, and the accelerator it needs."""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import re
import sys
import threading
import traceback
from typing import Any, Dict, Optional

from . import manifest as manifest_file
from .config import Config
from .signature import Signature

log = logging.getLogger("aegis")


_ACCELERATOR = re.compile(r"^cuda-\d+\.\d+$")


class LoadError(Exception):
    """The model cannot be served; the message says why, in one line (plus the traceback of the handler's error)."""

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.traceback = (
            "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip() if cause else None
        )

    def log(self) -> None:
        log.error(str(self), extra={"fields": {"traceback": self.traceback} if self.traceback else {}})


class Model:
    """The handler plus what the protocol needs to know about it.

    `state` is "loading" until the handler is constructed, then "ready"; "unavailable" (with `problem`) when the
    declared accelerator is missing, in which case the handler is never constructed.
    """

    def __init__(self, manifest: Dict[str, str], signature: Signature, handler_class: type, model_dir: str) -> None:
        self.manifest = manifest
        self.name = manifest["model_id"]
        self.version = manifest["version"]
        self.accelerator = manifest.get("accelerator") or "cpu"
        self.signature = signature
        self.handler_class = handler_class
        self.model_dir = model_dir
        self.state = "loading"
        self.problem: Optional[str] = None
        self.handler: Any = None
        self._lock: Optional[threading.Lock] = None
        self._pass_parameters = False

    @classmethod
    def load(cls, config: Config) -> "Model":
        """Read the manifest, import the handler and check its SIGNATURE; raise LoadError on any problem."""
        manifest_path = os.path.join(config.app_dir, "manifest.yaml")
        try:
            manifest = manifest_file.load(manifest_path)
        except OSError as e:
            raise LoadError(f"cannot read the manifest {manifest_path}: {e.strerror or e}") from e
        except ValueError as e:
            raise LoadError(f"invalid manifest: {e}") from e
        for key in ("model_id", "version"):
            if not manifest.get(key):
                raise LoadError(f"invalid manifest: {manifest_path} has no {key}")
        handler_path = os.path.join(config.app_dir, "server", "handler.py")
        module = _import_handler(handler_path)
        raw_signature = getattr(module, "SIGNATURE", None)
        if raw_signature is None:
            raise LoadError(f"the model handler {handler_path} defines no SIGNATURE")
        try:
            signature = Signature.from_dict(raw_signature)
        except ValueError as e:
            raise LoadError(f"the SIGNATURE in {handler_path} is invalid: {e}") from e
        handler_class = getattr(module, "Handler", None)
        if not isinstance(handler_class, type):
            raise LoadError(f"the model handler {handler_path} defines no Handler class")
        if not callable(getattr(handler_class, "predict", None)):
            raise LoadError(f"the Handler class in {handler_path} has no predict(inputs) method")
        model = cls(manifest, signature, handler_class, os.path.join(config.app_dir, "model"))
        model.problem = accelerator_problem(model.accelerator, config.nvidia_device_dir, config.libcuda)
        if model.problem:
            model.state = "unavailable"
        return model

    def construct(self) -> None:
        """Build the handler (may take long: weights load here); raise LoadError if it raises."""
        try:
            handler = self.handler_class(self.model_dir)
        except BaseException as e:  # the model author's code: SystemExit included
            if isinstance(e, KeyboardInterrupt):
                raise
            raise LoadError(
                f"the model handler failed to load: Handler({self.model_dir!r}) raised {_describe(e)}", e
            ) from None
        try:
            parameters = inspect.signature(handler.predict).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        self._pass_parameters = "parameters" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
        self._lock = None if getattr(handler, "thread_safe", True) else threading.Lock()
        self.handler = handler
        self.state = "ready"

    def predict(self, inputs: Dict[str, list], parameters: dict) -> Any:
        kwargs = {"parameters": parameters} if self._pass_parameters else {}
        if self._lock is None:
            return self.handler.predict(inputs, **kwargs)
        with self._lock:
            return self.handler.predict(inputs, **kwargs)

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.manifest.get("framework") or "python",
            **self.signature.to_metadata(),
        }


def _import_handler(path: str) -> Any:
    if not os.path.isfile(path):
        raise LoadError(f"the model handler {path} does not exist")
    sys.dont_write_bytecode = True  # the root filesystem is read-only: never try to write __pycache__
    spec = importlib.util.spec_from_file_location("handler", path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load the model handler {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module  # dataclasses, pickle and typing look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # SyntaxError, ImportError, SystemExit: anything the handler's import raises
        sys.modules.pop("handler", None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise LoadError(f"cannot import the model handler {path}: {_describe(e)}", e) from None
    return module


def accelerator_problem(accelerator: str, device_dir: str = "/dev", libcuda: str = "libcuda.so.1") -> Optional[str]:
    """Why the declared accelerator is not usable here, or None.

    A CUDA image must see an NVIDIA GPU (the device nodes the NVIDIA container runtime mounts, and a CUDA driver
    library that loads): serving it on the CPU would silently change latency and results. The probe loads the
    driver library but does not initialise CUDA, so a handler can still fork before its own CUDA initialisation.
    """
    if accelerator == "cpu":
        return None
    if not _ACCELERATOR.match(accelerator):
        return f"unknown accelerator {accelerator!r} in the manifest (expected `cpu` or `cuda-MAJOR.MINOR`)"
    control = os.path.join(device_dir, "nvidiactl")
    try:
        gpus = sorted(n for n in os.listdir(device_dir) if re.match(r"^nvidia\d+$", n))
    except OSError:
        gpus = []
    if not os.path.exists(control) or not gpus:
        return (
            f"accelerator {accelerator} is declared but no NVIDIA GPU is visible ({control} or "
            f"{os.path.join(device_dir, 'nvidia<N>')} missing); refusing to serve on the CPU"
        )
    nodes = [control] + [os.path.join(device_dir, g) for g in gpus]
    unusable = [p for p in nodes if not os.access(p, os.R_OK | os.W_OK)]
    if unusable:
        return (
            f"accelerator {accelerator} is declared but {', '.join(unusable)} cannot be opened; "
            "refusing to serve on the CPU"
        )
    try:
        import ctypes  # only CUDA images need it

        ctypes.CDLL(libcuda)
    except (ImportError, OSError) as e:
        return (
            f"accelerator {accelerator} is declared but the CUDA driver library {libcuda} cannot be loaded ({e}); "
            "refusing to serve on the CPU"
        )
    return None


def _describe(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
