"""The constants block at the top of each script, and its overrides from the command line.

A script keeps its settings as plain UPPER_CASE module globals in one ruled, commented block
(nanoGPT's style), with the article's values as defaults. Two dicts may follow the block:

    QUICK = {"STEPS": 300}      # the quick profile: ./run.sh's default and the tests
    DRY_RUN = {"STEPS": 2}      # --dry-run: one pass through every code path, seconds

Only the names assigned between the two ruled `# ----` lines are constants: `--set` of anything
else (an import, a list the script builds below the block) is refused. The comment written beside
a constant is its documentation (`--help` prints it), and may end with a range tag in braces that
every value of it must satisfy, whether it comes from the block, a profile or `--set`:

    STEPS = 10_000         # optimisation steps (article: 10^4) {> 0}
    DROPOUT = 0.2          # dropout probability {>= 0, < 1}
    MAX_ITERATIONS = 300   # -1 runs until Ctrl+C {-1 or > 0}
    PHOTOS_DIR = "photos"  # a folder of images {nonempty}

A tag is alternatives joined by "or", each a comma-separated list of conditions that must all hold
("> 0", ">= 0", "< 1", "<= 1", or a bare number for equality); "nonempty" asks a string for some
non-blank text. Every float must be finite, tag or not. `resolve_constants()` collects the block,
applies the chosen profile, then every `--set NAME=VALUE`, checks each override against the
default's type and every value against its tag.
"""

from __future__ import annotations

import ast
import io
import math
import operator
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError

PROFILE_DICTS = ("QUICK", "DRY_RUN")
_PLAIN_TYPES = (bool, int, float, str, tuple, list, dict, type(None))
_RULE = re.compile(r"^#\s*-{20,}\s*$")
_TAG = re.compile(r"\{([^{}]*)\}\s*$")
_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}

# Every script accepts RUN_NAME, block or not: it separates the checkpoint and output folders of
# runs that must not share them (two runs at once, or two settings kept side by side).
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
    first, last = rules[0], rules[1]
    comments: dict[int, str] = {}
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
                tag = match.group(1).strip() if match else ""
                docs[target.id] = ConstantDoc(_TAG.sub("", text).strip(), tag)
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
    """The script's constants in the order they were written, then the implicit ones.

    With a ruled block, the names assigned in it; without one (a test's dict), every UPPER_CASE
    plain-data global."""
    docs = constant_docs(namespace)
    constants = {
        name: value
        for name, value in namespace.items()
        if name.isupper()
        and not name.startswith("_")
        and name not in PROFILE_DICTS
        and isinstance(value, _PLAIN_TYPES)
        and (docs is None or name in docs)
    }
    for name, (default, _) in IMPLICIT.items():
        constants.setdefault(name, default)
    return constants


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
    """The items of a list/tuple override, checked against the type the default's items share
    (an int is fine where floats are expected); a default of mixed or no items checks nothing."""
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
        if tag == "name":
            rule = "letters, digits, '.', '_' and '-' only"
        elif tag == "nonempty":
            rule = "not empty"
        else:
            rule = tag
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
    tags = range_tags(namespace)
    for name, value in constants.items():
        check_range(name, value, tags.get(name, ""))
    return constants


def describe_constants(namespace: dict[str, Any]) -> str:
    """The `--help` listing: each constant with its value, type and the comment beside it."""
    docs = constant_docs(namespace) or {}
    rows = []
    for name, value in collect_constants(namespace).items():
        if name in IMPLICIT:
            comment = _TAG.sub("", IMPLICIT[name][1]).strip()
            tag = range_tags(namespace)[name]
        else:
            doc = docs.get(name, ConstantDoc())
            comment, tag = doc.comment, doc.tag
        rule = f" [{tag}]" if tag else ""
        rows.append(f"  {name} = {value!r}  ({_type_name(value)}){rule}" + (f"\n      {comment}" if comment else ""))
    for dict_name, flag in (("QUICK", "--quick"), ("DRY_RUN", "--dry-run")):
        if namespace.get(dict_name):
            rows.append(f"  {flag} sets: " + ", ".join(f"{k}={v!r}" for k, v in namespace[dict_name].items()))
    return "\n".join(rows)
