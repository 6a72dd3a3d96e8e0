"""The constants block at the top of each script, and its overrides from the command line.

The constants are the UPPER_CASE names assigned between the two ruled `# ----` lines (nanoGPT's
style), optionally followed by the profiles `QUICK = {"STEPS": 300}` and `DRY_RUN = {"STEPS": 2}`.
The comment beside a constant is its `--help` text and may end with a range tag that every value
must satisfy: alternatives joined by "or", each a comma-separated list of conditions ("> 0",
">= 0", "< 1", "<= 1", a bare number; "nonempty" for strings). Floats must be finite, tag or not.

    DROPOUT = 0.2          # dropout probability {>= 0, < 1}
    MAX_ITERATIONS = 300   # -1 runs until Ctrl+C {-1 or > 0}

A value comes from the last of: the default, the chosen `Variants` entry, the profile, `--set NAME=VALUE`.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import operator
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError

PROFILE_DICTS = ("QUICK", "DRY_RUN")
_PLAIN_TYPES = (bool, int, float, str, tuple, list, dict, type(None))
_RULE = re.compile(r"^#\s*-{20,}\s*$")
_TAG = re.compile(r"\{([^{}]*)\}\s*$")
_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}

# Every script accepts RUN_NAME, block or not: runs that must not share folders get their own.
IMPLICIT = {"RUN_NAME": ("", "a name that gives this run its own checkpoint and output folders "
                             "(empty: the profile's shared ones) {name}")}


@dataclass(frozen=True)
class ConstantDoc:
    """What the script says of one constant: its comment (tag removed) and its range tag."""

    comment: str = ""
    tag: str = ""


def _block_docs(source: str) -> dict[str, ConstantDoc] | None:
    """The names assigned between the ruled lines, with their comments; None when there is no block."""
    lines = source.splitlines()
    rules = [i + 1 for i, line in enumerate(lines) if _RULE.match(line.strip())]  # 1-based
    if len(rules) < 2:
        return None
    first, last, comments = rules[0], rules[1], {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except tokenize.TokenError:
        return None
    docs: dict[str, ConstantDoc] = {}
    for node in ast.parse(source).body:
        if not first < node.lineno < last:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                text = " ".join(comments[i] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                                if i in comments)
                match = _TAG.search(text)
                docs[target.id] = ConstantDoc(_TAG.sub("", text).strip(), match.group(1).strip() if match else "")
    return docs


def constant_docs(namespace: dict[str, Any]) -> dict[str, ConstantDoc] | None:
    """The documented block of the script whose globals are `namespace`, or None (no file, no block)."""
    file = namespace.get("__file__")
    if not file or not Path(file).is_file():
        return None
    try:
        return _block_docs(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def collect_constants(namespace: dict[str, Any]) -> dict[str, Any]:
    """The block's constants in written order (without one, every UPPER_CASE plain global), then the implicit ones."""
    docs = constant_docs(namespace)
    constants = {name: value for name, value in namespace.items()
                 if name.isupper() and not name.startswith("_") and name not in PROFILE_DICTS
                 and isinstance(value, _PLAIN_TYPES) and (docs is None or name in docs)}
    for name, (default, _) in IMPLICIT.items():
        constants.setdefault(name, default)
    return constants


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def parse_value(name: str, text: str, default: Any) -> Any:
    """Turn the text of `--set NAME=TEXT` into a value of the default's type (containers: a Python literal)."""
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
    if isinstance(default, float) and text.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity"):
        return float(text)  # parsed here so that the range check below names the problem
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
        return type(default)(_items_like(name, value, default))
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    raise LabError(f"{name} expects a {expected}, got {text!r} (a {_type_name(value)})")


def _items_like(name: str, items: list | tuple, default: list | tuple) -> list:
    """The items of a list/tuple override, checked against the type the default's items share."""
    kinds = {type(item) for item in default}
    if len(kinds) != 1 or (kind := kinds.pop()) not in (bool, int, float, str):
        return list(items)
    checked = []
    for item in items:
        if kind is float and isinstance(item, (int, float)) and not isinstance(item, bool):
            item = float(item)
        elif type(item) is not kind:
            raise LabError(f"{name} expects a {type(default).__name__} of {kind.__name__} values, got "
                           f"{item!r} (a {_type_name(item)}) among {list(items)!r}")
        checked.append(item)
    return checked


def _condition_holds(condition: str, value: Any) -> bool:
    condition = condition.strip()
    if condition == "nonempty":
        return isinstance(value, str) and value.strip() != ""
    if condition == "name":  # a folder-name fragment: letters, digits, '.', '_' and '-'
        return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._-]*", value) is not None and ".." not in value
    for symbol, compare in _OPERATORS.items():
        if condition.startswith(symbol):
            bound = float(condition[len(symbol):])
            return isinstance(value, (int, float)) and not isinstance(value, bool) and compare(value, bound)
    return isinstance(value, (int, float)) and value == float(condition)


def check_range(name: str, value: Any, tag: str) -> None:
    """Raise a LabError naming the constant, its value and the rule when `value` breaks `tag`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise LabError(f"{name} must be a finite number, got {value!r}")
    if not tag or value is None:
        return
    alternatives = [part.split(",") for part in tag.split(" or ")]
    if not any(all(_condition_holds(c, value) for c in conditions) for conditions in alternatives):
        rule = {"name": "letters, digits, '.', '_' and '-' only", "nonempty": "not empty"}.get(tag, tag)
        raise LabError(f"{name}={value!r} is out of range: it must be {rule}")


def _check_names(names, valid: dict[str, Any], where: str) -> None:
    unknown = [name for name in names if name not in valid]
    if unknown:
        listing = ", ".join(f"{n} ({_type_name(v)})" for n, v in valid.items())
        raise LabError(f"unknown constant(s) {', '.join(unknown)} in {where}; valid names: {listing}")


def range_tags(namespace: dict[str, Any]) -> dict[str, str]:
    tags = {name: doc.tag for name, doc in (constant_docs(namespace) or {}).items() if doc.tag}
    for name, (_, comment) in IMPLICIT.items():
        match = _TAG.search(comment)
        tags.setdefault(name, match.group(1) if match else "")
    return tags


@dataclass(frozen=True)
class Variants:
    """Named sets of constant values, chosen by one constant, beaten by the profile and `--set`:
    `Variants("VARIANT", {"wide": {"WIDTHS": (8, 32, 16)}})`."""

    selector: str
    table: Mapping[str, Mapping[str, Any]]


_PROFILE_LAYERS = {"full": (), "quick": ("QUICK",), "dry_run": ("QUICK", "DRY_RUN")}
_PROFILE_FLAGS = {"QUICK": "--quick", "DRY_RUN": "--dry-run"}


@dataclass(frozen=True)
class Resolved:
    """The script's constants after every layer, and where each value came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def _parse_overrides(overrides, defaults: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise LabError(f"--set takes NAME=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        name = name.strip()
        _check_names([name], defaults, "--set")
        values[name] = parse_value(name, text, defaults[name])
    return values


def _check_same_type(name: str, value: Any, default: Any, where: str) -> None:
    """A table's value must be of its default's type (an int for a float is fine), as --set's are."""
    if (default is None or isinstance(value, type(default))
            or isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
            or isinstance(default, (list, tuple)) and isinstance(value, (list, tuple))):
        return
    raise LabError(f"{where} gives {name}={value!r} (a {_type_name(value)}), but {name} is a {_type_name(default)}")


def resolve_layers(namespace: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), profile: str = "full",
                   variants: Variants | None = None) -> Resolved:
    """The script's constants: the default, beaten by the variant, the profile ("quick", "dry_run"), `--set`."""
    defaults = collect_constants(namespace)
    if profile not in _PROFILE_LAYERS:
        raise LabError(f"unknown profile {profile!r}; valid: {', '.join(_PROFILE_LAYERS)}")
    profile_layers = []
    for dict_name in _PROFILE_LAYERS[profile]:
        profile_values = dict(namespace.get(dict_name) or {})
        _check_names(profile_values, defaults, f"the script's {dict_name} dict")
        profile_layers.append((f"profile {_PROFILE_FLAGS[dict_name]}", profile_values))
    explicit = _parse_overrides(overrides, defaults)

    layers: list[tuple[str, dict[str, Any]]] = [("default", defaults)]
    if variants is not None:
        _check_names([variants.selector], defaults, "the variant table's selector")
        chosen = defaults[variants.selector]
        for _, values in (*profile_layers, ("--set", explicit)):
            chosen = values.get(variants.selector, chosen)
        if chosen not in variants.table:
            raise LabError(f"unknown variant {chosen!r}; valid variants: {', '.join(variants.table)} "
                           f"(--set {variants.selector}=NAME)")
        variant_values = dict(variants.table[chosen])
        _check_names(variant_values, defaults, f"variant {chosen!r}")
        for name, value in variant_values.items():
            _check_same_type(name, value, defaults[name], f"variant {chosen!r}")
        layers.append((f"variant {chosen}", variant_values))
    layers += [*profile_layers, ("--set", explicit)]

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for name, value in layer.items():
            values[name], sources[name] = value, source
    tags = range_tags(namespace)
    for name, value in values.items():
        check_range(name, value, tags.get(name, ""))
    return Resolved(values, sources)


def resolve_constants(namespace: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), profile: str = "full",
                      variants: Variants | None = None) -> dict[str, Any]:
    """The script's constants after the variant, the profile ("full", "quick" or "dry_run") and the overrides."""
    return resolve_layers(namespace, overrides, profile, variants).values


def describe_constants(namespace: dict[str, Any], resolved: Resolved | None = None,
                       variants: Variants | None = None) -> str:
    """The `--help` listing: each constant's value, type, range, comment and (given `resolved`) layer."""
    docs = constant_docs(namespace) or {}
    tags = range_tags(namespace)
    rows = []
    for name, default in collect_constants(namespace).items():
        value = resolved.values[name] if resolved is not None else default
        source = f"  from {resolved.sources[name]}" if resolved is not None else ""
        comment = _TAG.sub("", IMPLICIT[name][1]).strip() if name in IMPLICIT else docs.get(name, ConstantDoc()).comment
        rule = f" [{tags[name]}]" if tags.get(name) else ""
        rows.append(f"  {name} = {value!r}  ({_type_name(value)}){rule}{source}" + (f"\n      {comment}" if comment else ""))
    if variants is not None:
        rows.append(f"  {variants.selector} names one of: {', '.join(variants.table)}")
    for dict_name, flag in _PROFILE_FLAGS.items():
        if namespace.get(dict_name):
            rows.append(f"  {flag} sets: " + ", ".join(f"{k}={v!r}" for k, v in namespace[dict_name].items()))
    return "\n".join(rows)


def constant_name(setting: str) -> str:
    """The constant that sets a settings-dataclass field: `learning_rate` is set by `LEARNING_RATE`."""
    return setting.upper()


def settings_from(settings_class: type, cfg: Any, prefix: str = "", **computed: Any) -> Any:
    """The settings dataclass, each field from its constant (`LR_STEP` sets `lr_step`; `<PREFIX>LR_STEP` first),
    or from `computed`."""
    values = cfg if isinstance(cfg, Mapping) else vars(cfg)
    names = {field.name for field in dataclasses.fields(settings_class)}
    unknown = sorted(set(computed) - names)
    if unknown:
        raise TypeError(f"{settings_class.__name__} has no field(s) {', '.join(unknown)}")
    chosen = dict(computed)
    for name in names - set(computed):
        for constant in (prefix + constant_name(name), constant_name(name)):
            if constant in values:
                chosen[name] = values[constant]
                break
    return settings_class(**chosen)
