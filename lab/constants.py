"""The constants block at the top of each script, and its overrides from the command line.

A script keeps its settings as plain UPPER_CASE module globals in one ruled, commented block
(nanoGPT's style), with the article's values as defaults. Two dicts may follow the block:

    QUICK = {"STEPS": 300}      # the quick profile: ./run.sh's default and the tests
    DRY_RUN = {"STEPS": 2}      # --dry-run: one pass through every code path, seconds

`resolve_constants()` collects the block, applies the chosen profile, then every
`--set NAME=VALUE` from the shell, and checks each override against the default's type.
Names that start with an underscore, and values that are not plain data, are not constants.
"""

from __future__ import annotations

import ast
from typing import Any

from lab.errors import LabError

PROFILE_DICTS = ("QUICK", "DRY_RUN")
_PLAIN_TYPES = (bool, int, float, str, tuple, list, dict, type(None))


def collect_constants(namespace: dict[str, Any]) -> dict[str, Any]:
    """The UPPER_CASE plain-data globals of a script, in the order they were written."""
    return {
        name: value
        for name, value in namespace.items()
        if name.isupper()
        and not name.startswith("_")
        and name not in PROFILE_DICTS
        and isinstance(value, _PLAIN_TYPES)
    }


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def parse_value(name: str, text: str, default: Any) -> Any:
    """Turn the text of `--set NAME=TEXT` into a value of the same type as the default.

    Rules: a bool takes true/false/1/0/yes/no; an int must be a whole number; a float takes any
    number (an int given for a float is fine); a str takes the text as it is; a list, tuple or
    dict takes a Python literal; a default of None takes any literal, or the text as a string.
    """
    expected = _type_name(default)
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise LabError(f"{name} expects a bool (true/false), got {text!r}")
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if default is None:
            return text
        raise LabError(f"{name} expects a {expected}, got {text!r}") from None
    if default is None:
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    raise LabError(f"{name} expects a {expected}, got {text!r} (a {_type_name(value)})")


def _check_names(names, valid: dict[str, Any], where: str) -> None:
    unknown = [name for name in names if name not in valid]
    if unknown:
        listing = ", ".join(f"{n} ({_type_name(v)})" for n, v in valid.items())
        raise LabError(f"unknown constant(s) {', '.join(unknown)} in {where}; valid names: {listing}")


def resolve_constants(
    namespace: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), profile: str = "full"
) -> dict[str, Any]:
    """The script's constants after the profile ("full", "quick" or "dry_run") and the overrides."""
    defaults = collect_constants(namespace)
    constants = dict(defaults)
    layers = {"full": (), "quick": ("QUICK",), "dry_run": ("QUICK", "DRY_RUN")}
    if profile not in layers:
        raise LabError(f"unknown profile {profile!r}; valid: {', '.join(layers)}")
    for dict_name in layers[profile]:
        profile_values = namespace.get(dict_name) or {}
        _check_names(profile_values, defaults, f"the script's {dict_name} dict")
        constants.update(profile_values)
    for item in overrides:
        if "=" not in item:
            raise LabError(f"--set takes NAME=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        name = name.strip()
        _check_names([name], defaults, "--set")
        constants[name] = parse_value(name, text, defaults[name])
    return constants
