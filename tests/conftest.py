"""Suite-wide: the `slow` marker, given to every test that starts a real process.

A test is slow when it, or a fixture it uses, reaches code that starts a process: dig, nginx, dnsmasq,
busybox, dnsperf, kubectl, openssl, `ip netns`, the API-server emulator, `portolan` itself. That is
worked out from the code rather than remembered: the names a test (or fixture) function uses are
looked up where it was defined, and the project's own functions and classes found that way are
followed the same way, down to the `subprocess` module, asyncio's subprocess calls or os's spawns.
So a new test that uses `DnsServer`, `dig`, `Dnsmasq`, `pod_namespace`, the `emulator` fixture or
anything built on them is slow without saying so. `pytest -m "not slow"` runs the pure tests alone.

A runtime check backs the walk: a test that is not marked slow and starts a process anyway fails,
naming the command, so whatever the walk cannot see (a process started through an attribute of an
object handed in) is noticed the first time it runs; mark such a test `@pytest.mark.slow`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

FIRST_PARTY = ("tests", "ingress", "dnsserver", "dnsplugins", "kubewatch", "corefile", "portolan")
# Calls that start a process: attribute names under the module that offers them.
_SPAWNS = {
    "subprocess": frozenset({"run", "Popen", "call", "check_call", "check_output", "getoutput",
                             "getstatusoutput"}),
    "asyncio": frozenset({"create_subprocess_exec", "create_subprocess_shell"}),
    "os": frozenset({"fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen", "execv", "execve",
                     "execvp", "execvpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"}),
}
# Event-loop methods that start one, reached through a loop object rather than a module.
_LOOP_SPAWNS = frozenset({"subprocess_exec", "subprocess_shell"})


def _first_party(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module.split(".", 1)[0] in FIRST_PARTY


def _never_run(code: types.CodeType) -> bool:
    """A function whose signature says `# pragma: no cover`: a fallback the tests never take (ingress's
    openssl route for a missing cryptography), which must not make its callers slow."""
    for lineno in range(code.co_firstlineno, code.co_firstlineno + 10):
        line = linecache.getline(code.co_filename, lineno)
        if "pragma: no cover" in line:
            return True
        if not line or line.split("#", 1)[0].rstrip().endswith(":"):
            return False
    return False


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


class _Walk:
    """Whether functions and classes reach a process start.

    A depth-first walk from each test; a positive answer is remembered for the function or class it
    was found for, and a walk that finds nothing proves that of everything it visited (all they
    reach, it reached), so that is remembered too.
    """

    def __init__(self) -> None:
        self.known: dict[object, bool] = {}

    def spawns(self, obj: object) -> bool:
        visited: set[object] = set()
        found = self._visit(obj, visited)
        if not found:
            self.known.update(dict.fromkeys(visited, False))
        return found

    def _visit(self, obj: object, visited: set[object]) -> bool:
        if callable(obj):
            with contextlib.suppress(ValueError):  # a __wrapped__ cycle
                obj = inspect.unwrap(obj)
        if isinstance(obj, functools.partial):
            return any(self._visit(o, visited) for o in (obj.func, *obj.args))
        if isinstance(obj, (staticmethod, classmethod)):
            return self._visit(obj.__func__, visited)
        if isinstance(obj, property):
            return any(self._visit(f, visited) for f in (obj.fget, obj.fset) if f is not None)
        module = getattr(obj, "__module__", None) or ""
        if module in ("subprocess", "asyncio.subprocess") and \
                getattr(obj, "__name__", "") in _SPAWNS["subprocess"] | _SPAWNS["asyncio"]:
            return True
        if not _first_party(obj):
            return False
        key: object = obj if isinstance(obj, type) else getattr(obj, "__code__", None)
        if key is None:
            return False
        if key in self.known:
            return self.known[key]
        if key in visited:
            return False
        visited.add(key)
        if isinstance(obj, type):
            found = any(self._visit(m, visited) for m in vars(obj).values()) or \
                any(self._visit(base, visited) for base in obj.__mro__[1:])
        else:
            code = getattr(obj, "__code__", None)
            scope = getattr(obj, "__globals__", {})
            found = isinstance(code, types.CodeType) and not _never_run(code) and \
                any(self._names(c.co_names, scope, visited) for c in _codes(code))
        if found:
            self.known[key] = True
        return found

    def _names(self, names: tuple[str, ...], scope: dict[str, Any], visited: set[object]) -> bool:
        """Whether the names one code object uses reach a process start."""
        if _LOOP_SPAWNS.intersection(names):
            return True
        for name in names:
            value = scope.get(name)
            if value is None and name.split(".", 1)[0] in FIRST_PARTY:
                value = sys.modules.get(name)  # `from tests.server import dig` inside a function
            if not isinstance(value, types.ModuleType):
                if value is not None and self._visit(value, visited):
                    return True
                continue
            spawns = _SPAWNS.get(value.__name__)
            if spawns is not None and spawns.intersection(names):
                return True
            # A project module used as a namespace (`netns.in_ns(...)`): follow what it offers.
            if value.__name__.split(".", 1)[0] in FIRST_PARTY:
                members = (getattr(value, attr, None) for attr in names)
                if any(m is not None and not isinstance(m, types.ModuleType) and self._visit(m, visited)
                       for m in members):
                    return True
        return False


_WALK = _Walk()


def _test_function(item: pytest.Item) -> Callable[..., object] | None:
    fn = getattr(item, "function", None)
    if fn is None:
        return None
    inner = getattr(getattr(fn, "hypothesis", None), "inner_test", None)  # @given wraps the test
    return inner if inner is not None else fn


def _fixture_functions(item: pytest.Item) -> Iterator[object]:
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            yield fixturedef.func


def starts_processes(item: pytest.Item) -> bool:
    """Whether the test's function, or a fixture function it uses, reaches code that starts a process."""
    fn = _test_function(item)
    if fn is not None and _WALK.spawns(fn):
        return True
    return any(_first_party(f) and _WALK.spawns(f) for f in _fixture_functions(item))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is None and starts_processes(item):
            item.add_marker(pytest.mark.slow)


# -- the runtime check ----------------------------------------------------------------------------

_watching: list[list[str]] = []  # the commands started during the current unmarked test, if any
_execute_child = subprocess.Popen._execute_child


def _watched_execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
    for started in _watching:
        started.append(args if isinstance(args, str) else " ".join(map(str, args)))
    return _execute_child(self, args, *rest, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    subprocess.Popen._execute_child = _watched_execute_child


def pytest_unconfigure(config: pytest.Config) -> None:
    subprocess.Popen._execute_child = _execute_child


@pytest.fixture(autouse=True)
def _pure_unless_slow(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that is not marked slow yet starts a process (see the module docstring)."""
    if request.node.get_closest_marker("slow") is not None or sys.platform == "win32":
        yield
        return
    started: list[str] = []
    _watching.append(started)
    try:
        yield
    finally:
        _watching.remove(started)
    if started:
        pytest.fail(f"this test starts a process ({started[0]!r}) but is not marked slow: mark it "
                    "@pytest.mark.slow, or start the process through a helper tests/conftest.py can see",
                    pytrace=False)
