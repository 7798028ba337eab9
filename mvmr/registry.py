"""Name -> object registries for everything mvmr can be extended with: extractors, teachers, methods, datasets.

One ``Registry`` class serves all four, extended from outside by decorator, function or entry point (groups
``mvmr.extractors``, ``mvmr.teachers``, ``mvmr.methods``, ``mvmr.datasets``); an entry point names either a module
(importing it registers) or an object (registered under the entry point's name). A duplicate name names both
origins; an unknown name suggests the closest registered one. A provider name is either exact (``hog``) or a
*family* prefix that takes a spec after a colon (``timm:resnet18``); a family factory receives the spec first.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from .errors import MVMRError, ProviderParamError, RegistryError

if TYPE_CHECKING:  # torch is imported on first use: `import mvmr` (and the CLI's start) stays light
    from .providers import Provider


@dataclass
class _Entry:
    factory: Callable[..., Provider]
    family: bool
    origin: str


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry:
    """One registry per kind ("extractor", "teacher", "method", "dataset"). ``builtins`` names a module of mvmr's
    own that registers the built-in entries when first needed."""

    def __init__(self, kind: str, group: str, builtins: Optional[str] = None) -> None:
        self.kind = kind
        self.group = group
        self.builtins = builtins
        self._entries: dict[str, _Entry] = {}
        self._entry_points: Optional[dict[str, importlib.metadata.EntryPoint]] = None
        self._loaded_eps: set[str] = set()

    def _load_builtins(self) -> None:
        if self.builtins is not None:
            module, self.builtins = self.builtins, None
            importlib.import_module(module)

    # -- registration ---------------------------------------------------------------------------------------------
    def register(self, name: Optional[str] = None, factory: Optional[Callable[..., Provider]] = None, *,
                 family: bool = False):
        """``@register("name")`` / ``@register`` as a decorator, or ``register("name", factory)`` as a function."""
        if callable(name) and factory is None:  # bare decorator: @register
            factory, name = name, None
        if factory is None:
            return lambda f: self.register(name, f, family=family)
        key = name or getattr(factory, "name", None) or factory.__name__.lower()
        if ":" in key:
            raise RegistryError(f"{self.kind} name '{key}' may not contain ':' (that separates a family from its spec)")
        old = self._entries.get(key)
        if old is not None and old.factory is not factory:
            raise RegistryError(
                f"{self.kind} '{key}' is registered twice: by {old.origin} and by {_origin(factory)}; "
                f"rename one of them"
            )
        self._entries[key] = _Entry(factory, family, _origin(factory))
        return factory

    def unregister(self, name: str) -> None:
        """Remove a registration (for tests and interactive sessions)."""
        self._entries.pop(name, None)

    # -- entry points ---------------------------------------------------------------------------------------------
    def _eps(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}
        return self._entry_points

    def _load_entry_point(self, name: str) -> None:
        self._load_builtins()
        ep = self._eps().get(name)
        if ep is None or name in self._loaded_eps:
            return
        self._loaded_eps.add(name)
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must say which one it is
            raise RegistryError(f"{self.kind} entry point '{name}' ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(obj, types.ModuleType) and name not in self._entries:
            self.register(name, obj, family=bool(getattr(obj, "family", False)))
        if name not in self._entries:
            raise RegistryError(
                f"{self.kind} entry point '{name}' ({ep.value}) loaded but registered nothing under that name"
            )

    def refresh(self) -> None:
        """Forget the cached entry-point list (after installing a plug-in in a running process)."""
        self._entry_points = None

    # -- lookup ---------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name, loading all installed entry points."""
        self._load_builtins()
        for name in list(self._eps()):
            if name not in self._entries:
                self._load_entry_point(name)
        return sorted(self._entries)

    def is_family(self, name: str) -> bool:
        """True when ``name`` is a family prefix that takes a spec (``timm`` in ``timm:resnet18``)."""
        return self.lookup_entry(name).family

    def factory(self, name: str) -> Callable[..., Provider]:
        """The registered factory (class or function) for an exact or family name."""
        return self.lookup_entry(name).factory

    def lookup_entry(self, name: str) -> _Entry:
        if name not in self._entries:
            self._load_entry_point(name)
        if name not in self._entries:
            self.lookup(name)  # raises the unknown-name error with suggestions
        return self._entries[name]

    def _display_names(self) -> list[str]:
        return [f"{n}:<spec>" if self._entries[n].family else n for n in self.names()]

    def lookup(self, name: str) -> tuple[_Entry, Optional[str]]:
        """Entry for ``name`` and the family spec (None for an exact name)."""
        base, sep, spec = name.partition(":")
        if base not in self._entries:
            self._load_entry_point(base)
        entry = self._entries.get(base)
        if entry is not None and entry.family == bool(sep) and (spec or not sep):
            return entry, (spec if sep else None)
        if entry is not None and entry.family:
            raise RegistryError(f"{self.kind} '{base}' needs a spec: write '{base}:<spec>'")
        known = self._display_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise RegistryError(f"unknown {self.kind} '{name}'{hint} registered: {', '.join(known) or '(none)'}")

    def __contains__(self, name: str) -> bool:
        try:
            self.lookup(name)
        except RegistryError:
            return False
        return True

    def get(self, name: str) -> Any:
        """The object registered under an exact name (a method class, a dataset builder, ...)."""
        entry, spec = self.lookup(name)
        if spec is not None:
            raise RegistryError(f"{self.kind} '{name}' takes no ':<spec>'")
        return entry.factory


class ProviderRegistry(Registry):
    """Extractors and teachers: ``create`` checks the parameters, builds, and freezes."""

    def create(self, name: str, **params: Any) -> Provider:
        """Build the provider ``name`` with ``params``, frozen, remembering name and params for its fingerprint."""
        from .providers import Provider, freeze

        entry, spec = self.lookup(name)
        check_params(f"{self.kind} '{name}'", entry.factory, params, skip=1 if spec is not None else 0)
        try:
            provider = entry.factory(spec, **params) if spec is not None else entry.factory(**params)
        except MVMRError:
            raise
        except (TypeError, ValueError) as exc:
            raise ProviderParamError(f"{self.kind} '{name}': {exc}") from exc
        if not isinstance(provider, Provider):
            raise RegistryError(f"{self.kind} '{name}' ({entry.origin}) returned {type(provider).__name__}, "
                                f"not an mvmr.Provider")
        provider.name = name
        provider.params = dict(params)
        return freeze(provider)


def check_params(who: str, factory: Callable, params: dict, skip: int = 0) -> None:
    """Reject parameters the factory does not accept, naming ``who``, the parameter and what it accepts; ``skip``
    leading positional parameters are not the user's to give (a family's spec, an objective's dimensions)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    accepted = [p.name for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][skip:]
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ProviderParamError(
                f"{who} has no parameter '{key}'{hint}; accepted: {', '.join(accepted) or '(none)'}"
            )


extractors = ProviderRegistry("extractor", "mvmr.extractors")
teachers = ProviderRegistry("teacher", "mvmr.teachers")
methods = Registry("method", "mvmr.methods", builtins="mvmr.methods")
datasets = Registry("dataset", "mvmr.datasets", builtins="mvmr.data.datasets")
objectives = Registry("objective", "mvmr.objectives", builtins="mvmr.losses.distill")


def create_provider(name: str, **params: Any) -> Provider:
    """Build an extractor or a teacher by name (a recipe's ``providers`` section mixes both)."""
    hits = [reg for reg in (extractors, teachers) if name in reg]
    if len(hits) > 1:
        raise RegistryError(f"'{name}' is both an extractor and a teacher; rename one of them")
    if not hits:
        known = extractors._display_names() + teachers._display_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise RegistryError(f"unknown provider '{name}'{hint} registered: {', '.join(sorted(known))}")
    return hits[0].create(name, **params)


def build_providers(params: Mapping[str, Mapping[str, Any]], seed: Optional[int] = None,
                    kinds: Optional[Mapping[str, Optional[str]]] = None) -> dict[str, "Provider"]:
    """Providers by name with their params, built under ``seed``: a random-weight teacher (``pretrained: none``) is
    the same network in every process and run, so its cached features stay valid. ``kinds`` maps a name that is
    only a label to the registered provider it builds (a recipe entry's ``provider``). Entries that build the same
    provider with the same params (a teacher's summary and spatial terms) share one instance: one network in memory."""
    import json

    import torch

    kinds, built, shared = kinds or {}, {}, {}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for name, p in params.items():
            kind = kinds.get(name) or name
            key = (kind, json.dumps(dict(p), sort_keys=True, default=repr))
            if key not in shared:
                shared[key] = create_provider(kind, **dict(p))
            built[name] = shared[key]
    return built
