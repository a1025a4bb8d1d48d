"""`serve --profiles FILE`: the server's certificate profiles from YAML.

The file replaces or adds to the built-ins by name; a key left out keeps the built-in's
value (or the dataclass default for a new profile). A mistake stops start-up with a message
naming the profile and key, never a half-read set.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from acme_server.config import parse_duration
from acme_server.domain.profiles import EKUS, KEY_TYPES, Profile, ProfileSet, builtin_profiles

_BOOL_KEYS = ("common_name", "revocation_info", "explicit_grant", "enabled")
_KNOWN = {
    "description",
    "validity",
    "min_validity",
    "ekus",
    "key_types",
    "max_names",
    *_BOOL_KEYS,
}


class ProfileConfigError(ValueError):
    """The profiles file is wrong; the message says where."""


def load_profiles(path: Path | None, default_validity: timedelta) -> ProfileSet:
    builtins = builtin_profiles(default_validity)
    if path is None:
        return builtins
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileConfigError(f"{path}: {exc}") from None
    return parse_profiles(doc or {}, builtins, str(path))


def parse_profiles(doc: Any, builtins: ProfileSet, where: str = "profiles") -> ProfileSet:
    """`{default: NAME, profiles: {NAME: {...}}}` over `builtins`."""
    if not isinstance(doc, dict) or set(doc) - {"default", "profiles"}:
        raise ProfileConfigError(f"{where}: expected a mapping with 'profiles' and 'default'")
    profiles = dict(builtins.profiles)
    entries = doc.get("profiles") or {}
    if not isinstance(entries, dict):
        raise ProfileConfigError(f"{where}: 'profiles' must map names to settings")
    for name, values in entries.items():
        profiles[str(name)] = _profile(str(name), values or {}, profiles.get(str(name)), where)
    default = doc.get("default", builtins.default)
    if default not in profiles or not profiles[default].enabled:
        raise ProfileConfigError(f"{where}: default profile {default!r} is not an enabled profile")
    if profiles[default].explicit_grant:
        raise ProfileConfigError(f"{where}: default profile {default!r} needs an explicit grant")
    return ProfileSet(profiles, default)


def _profile(name: str, values: Any, base: Profile | None, where: str) -> Profile:
    at = f"{where}: profile {name!r}"
    if not isinstance(values, dict):
        raise ProfileConfigError(f"{at}: expected a mapping")
    unknown = set(values) - _KNOWN
    if unknown:
        raise ProfileConfigError(f"{at}: unknown keys {sorted(unknown)} (known: {sorted(_KNOWN)})")
    if not name or len(name) > 64:
        raise ProfileConfigError(f"{at}: a name has 1..64 characters")
    if base is None and "validity" not in values:
        raise ProfileConfigError(f"{at}: a new profile needs 'validity'")
    changes: dict[str, Any] = {}
    try:
        if "description" in values:
            changes["description"] = str(values["description"])
        for key in ("validity", "min_validity"):
            if key in values:
                changes[key] = parse_duration(str(values[key]))
        if "ekus" in values:
            changes["ekus"] = _choices(values["ekus"], EKUS, "ekus")
        if "key_types" in values:
            changes["key_types"] = _choices(values["key_types"], KEY_TYPES, "key_types")
        if "max_names" in values:
            max_names = values["max_names"]
            if not isinstance(max_names, int) or isinstance(max_names, bool) or max_names < 1:
                raise ValueError("max_names must be a positive integer")
            changes["max_names"] = max_names
        for key in _BOOL_KEYS:
            if key in values:
                if not isinstance(values[key], bool):
                    raise ValueError(f"{key} must be true or false")
                changes[key] = values[key]
    except ValueError as exc:
        raise ProfileConfigError(f"{at}: {exc}") from None
    profile = (
        dataclasses.replace(base, **changes)
        if base is not None
        else Profile(name=name, description=changes.pop("description", name), **changes)
    )
    if profile.min_validity > profile.validity:
        raise ProfileConfigError(f"{at}: min_validity is longer than validity")
    return profile


def _choices(value: Any, allowed: tuple[str, ...], key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or any(i not in allowed for i in items):
        raise ValueError(f"{key} must be a non-empty list of {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))
