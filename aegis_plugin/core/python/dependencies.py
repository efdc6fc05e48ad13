"""Which locked distributions a handler needs: its requirements and, transitively, what their wheels require.

A resolve's lock serves every handler in it; each image carries only the closure of its own handler's
requirements, on its own platform (a `Requires-Dist` marker is evaluated for the image's interpreter, with
the extras asked of that distribution), as an installer would compute it.
"""
from __future__ import annotations

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.python import markers, wheels
from aegis_plugin.core.python.interpreter import Interpreter


class DependencyError(AegisError, ValueError):
    pass


def closure(requirements: list[str], wheel_paths: dict[str, str], interpreter: Interpreter,
            lock_name: str) -> dict[str, frozenset[str]]:
    """Canonical name -> the extras asked of it, for every distribution `requirements` need on `interpreter`.
    `wheel_paths` maps each locked distribution available there to its wheel file."""
    environment = interpreter.marker_environment()
    needed: dict[str, frozenset[str]] = {}
    pending = [(markers.parse_requirement(r), frozenset(), "the handler") for r in requirements]
    while pending:
        requirement, parent_extras, parent = pending.pop(0)
        if not markers.evaluate(requirement.marker, environment, parent_extras):
            continue
        if requirement.name not in wheel_paths:
            raise DependencyError(
                f"{parent} requires {requirement.name}, which {lock_name} does not pin for {interpreter.platform}: "
                "add it to the resolve's requirements and refresh the lock"
            )
        extras = needed.get(requirement.name, frozenset()) | requirement.extras
        if requirement.name in needed and extras == needed[requirement.name]:
            continue
        needed[requirement.name] = extras
        for line in wheels.requires_dist(wheel_paths[requirement.name]):
            pending.append((markers.parse_requirement(line), extras, requirement.name))
    return dict(sorted(needed.items()))
