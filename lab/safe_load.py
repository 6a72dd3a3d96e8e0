"""The one way this project reads a file a user can hand over: weights, checkpoints, saved arrays.

torch's formats are pickles, which can call any importable function while loading (`os.system`);
none of these readers can run code. `load_torch` uses torch's weights-only unpickler; with
`stand_ins=True` (a Lightning `last.ckpt`) every other class it names becomes an inert `StandIn`,
except names from modules that run code (`os`, `builtins`...), which refuse the file.
`load_torchscript_tensors` reads a TorchScript archive (CLIP) the same way, never with
`torch.jit.load`, which runs the archive's code. `load_npz` uses `allow_pickle=False`.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import pickletools
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from lab.errors import LabError

ZIP_MAGIC = b"PK\x03\x04"

# Modules whose names in a weights file can only be a payload: the file is refused, not given stand-ins.
PAYLOAD_MODULES = frozenset({
    "builtins", "__builtin__", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy",
    "pickle", "_pickle", "marshal", "ctypes", "socket", "pty", "code", "codeop", "webbrowser",
    "multiprocessing", "pdb", "torch", "setuptools", "pip",
})

# TorchScript's pickler names these for typed lists and dicts (build_intlist, restore_type_tag...);
# they get stand-ins like any other name, instead of refusing the archive as `torch` names do.
TORCHSCRIPT_BUILDERS = ("torch.jit._pickle.",)


class UnsafeFileError(LabError):
    """A file asks to import or run something that a weights file never needs; nothing of it ran."""


class IncompleteFileError(LabError):
    """A file ends too early: a download or a write was cut short."""


class StandIn:
    """Takes the place of a class or function a checkpoint names (never imported): building,
    calling or filling it only stores what it is given."""

    origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:  # BUILD
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEM(S) on a stand-in for a dict subclass
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # APPEND(S) on a stand-in for a list subclass
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)

    def __repr__(self) -> str:
        return f"<stand-in for {self.origin}>"


def _stand_in_for(full_name: str) -> type[StandIn]:
    module, _, name = full_name.rpartition(".")
    return type(name, (StandIn,), {"__module__": module, "__qualname__": name, "origin": full_name})


def _weights_only_unpickler():
    from torch import _weights_only_unpickler
    return _weights_only_unpickler


def _stand_in_unpickler_class():
    """torch's weights-only unpickler, with SETITEM(S)/APPEND(S) allowed on stand-ins too."""
    base = _weights_only_unpickler().Unpickler

    class StandInUnpickler(base):
        def _check_set_item_target(self, opcode: str) -> None:
            if not isinstance(self.stack[-1], StandIn):
                super()._check_set_item_target(opcode)

        def _check_append_target(self, list_obj: Any) -> None:
            if not isinstance(list_obj, StandIn):
                super()._check_append_target(list_obj)

    return StandInUnpickler


class _StandInPickleModule:
    """A pickle module for torch.load whose `load` (non-zip headers) and `Unpickler` are the restricted one."""

    UnpicklingError = pickle.UnpicklingError
    __name__ = "lab.safe_load"

    def __init__(self) -> None:
        self.Unpickler = _stand_in_unpickler_class()

    def load(self, file: Any, **kwargs: Any) -> Any:
        return self.Unpickler(file, **kwargs).load()


def _globals_in(stream: Any, pickles: int = 1) -> list[str]:
    """The importable names the next `pickles` pickles in `stream` ask for, in order of first use
    (read statically: pickletools decodes opcodes and builds nothing)."""
    names: list[str] = []
    for _ in range(pickles):
        strings: list[Any] = []  # what was pushed last, and the memo, to name a STACK_GLOBAL's target
        memo: dict[Any, Any] = {}
        try:
            for opcode, arg, _position in pickletools.genops(stream):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif opcode.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                    memo[len(memo) if opcode.name == "MEMOIZE" else arg] = strings[-1] if strings else None
                elif opcode.name in ("BINGET", "LONG_BINGET", "GET"):
                    strings.append(memo.get(arg))
                if opcode.name in ("GLOBAL", "INST"):
                    name = _as_torch_reads_it(*str(arg).split(" ", 1))
                elif opcode.name == "STACK_GLOBAL":
                    module, name = (strings[-2:] if len(strings) >= 2 else ["?", "?"])
                    name = f"{module}.{name} (named by STACK_GLOBAL)"
                elif opcode.name in ("EXT1", "EXT2", "EXT4"):
                    name = "a name from the copyreg extension registry"
                else:
                    continue
                if name not in names:
                    names.append(name)
        except Exception:  # damaged: the unpickler reports it
            break
    return names


def _as_torch_reads_it(module: str, name: str = "") -> str:
    """A GLOBAL's full name after the Python 2 renames torch's unpickler applies (its lookup key)."""
    from torch._utils import IMPORT_MAPPING, NAME_MAPPING
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _python3_module(full_name: str) -> str:
    """The module a name refers to once Python's own Python 2 renames apply (`commands` is `subprocess`)."""
    import _compat_pickle
    module = full_name.rpartition(".")[0]
    return _compat_pickle.IMPORT_MAPPING.get(module, module)


def _allowed_globals() -> set[str]:
    """The names torch's weights-only unpickler builds for real (tensors, storages, containers)."""
    unpickler = _weights_only_unpickler()
    try:
        return set(unpickler._get_allowed_globals())
    except AttributeError:  # another torch: every name is reported as unsafe, nothing is allowed by us
        return set()


def _zip_prefix(archive: zipfile.ZipFile, path: Path, what: str) -> str:
    """The one top folder a torch zip file keeps its records in (`archive/`, or the file's stem)."""
    prefixes = {name.split("/", 1)[0] for name in archive.namelist() if name.count("/") >= 1}
    pickles = [prefix for prefix in prefixes if f"{prefix}/data.pkl" in archive.namelist()]
    if len(pickles) != 1:
        raise LabError(f"cannot read {what} {path}: it is a zip file, but not one torch.save or "
                       "torch.jit.save wrote (no single data.pkl)")
    return pickles[0]


def _is_torchscript(archive: zipfile.ZipFile) -> bool:
    return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def _payload_names(names: list[str]) -> list[str]:
    """The names among `names` that only a payload asks for (or that cannot be given a stand-in)."""
    return [name for name in names
            if ({name.split(".")[0], _python3_module(name).split(".")[0]} & PAYLOAD_MODULES
                and not name.startswith(TORCHSCRIPT_BUILDERS))
            or not name.replace("_", "").replace(".", "").isalnum()]


def _refuse(path: Path, what: str, names: list[str]) -> UnsafeFileError:
    names = [f"{_python3_module(name)}.{name.rpartition('.')[2]}" if "(" not in name else name for name in names]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return UnsafeFileError(f"refusing {what} {path}: it asks to import or run {shown}, which a weights file "
                           "never needs (nothing from it was run); use the file from its official source")


def _check_exists(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise LabError(f"no {what} at {path}: file not found")
    if path.stat().st_size == 0:
        raise IncompleteFileError(f"cannot read {what} {path}: the file is empty (a write or a download was cut short)")
    return path


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:  # torch wraps the unpickler's reason in a paragraph of advice
        if line.startswith(("Unsupported", "Trying to", "Can only", "Could not")):
            return line[:200]
    return (lines[0] if lines else type(error).__name__)[:200]


def _cut_short(error: BaseException) -> bool:
    return isinstance(error, EOFError) or any(mark in str(error) for mark in (
        "truncated", "unexpected EOF", "central directory", "Ran out of input"))


def load_torch(path: Path | str, what: str = "checkpoint", *, stand_ins: bool = False, map_location: Any = "cpu") -> Any:
    """A torch file's content, built without running anything it names; `what` names it in messages."""
    import torch
    path = _check_exists(path, what)
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == ZIP_MAGIC
    if is_zip and not zipfile.is_zipfile(path):
        raise IncompleteFileError(f"cannot read {what} {path}: the file is damaged or incomplete (its zip "
                                  "directory is missing: cut short)")
    if not is_zip and tarfile.is_tarfile(path):
        raise LabError(f"cannot read {what} {path}: torch's tar format of 2017 is not supported; save it again "
                       "with a current torch")
    if is_zip:
        with zipfile.ZipFile(path) as archive:
            if _is_torchscript(archive):
                raise LabError(f"{what} {path} is a TorchScript archive, not a torch.save file; save its state_dict "
                               "with torch.save instead")
            names = _globals_in(io.BytesIO(archive.read(f"{_zip_prefix(archive, path, what)}/data.pkl")))
    else:
        with open(path, "rb") as handle:  # the non-zip format: magic, protocol, system info, then the data
            names = _globals_in(handle, pickles=4)
    unknown = [name for name in names if name not in _allowed_globals()]
    if stand_ins and _payload_names(unknown):
        raise _refuse(path, what, _payload_names(unknown))
    try:
        warnings.filterwarnings("ignore", message=".*pickle protocol.*weights_only Unpickler", category=UserWarning)
        if not stand_ins or not unknown:
            return torch.load(path, map_location=map_location, weights_only=True)
        replacements = [(_stand_in_for(name), name) for name in unknown]
        with torch.serialization.safe_globals(replacements), torch.sparse.check_sparse_tensor_invariants(True):
            if is_zip:
                return _read_zip(path, what)
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_StandInPickleModule())
    except LabError:
        raise
    except Exception as error:
        if _cut_short(error):
            raise IncompleteFileError(f"cannot read {what} {path}: the file is damaged or incomplete "
                                      "(it ends too early)") from None
        if isinstance(error, pickle.UnpicklingError) and unknown and not stand_ins:
            raise _refuse(path, what, unknown) from None
        raise LabError(f"cannot read {what} {path}: the file is damaged or incomplete "
                       f"({_first_line(error)})") from None


def _read_zip(path: Path, what: str) -> Any:
    """A torch zip file's data.pkl through the stand-in unpickler (the caller allows the stand-ins)."""
    import torch
    with zipfile.ZipFile(path) as archive:
        prefix = _zip_prefix(archive, path, what)
        records = set(archive.namelist())
        if f"{prefix}/byteorder" in records and archive.read(f"{prefix}/byteorder").strip() not in (b"", b"little"):
            raise LabError(f"cannot read {what} {path}: it was saved on a big-endian machine")
        storages: dict[str, Any] = {}

        def persistent_load(saved_id: Any) -> Any:
            if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
                raise pickle.UnpicklingError(f"unsupported persistent id {str(saved_id)[:80]}")
            storage_type, key, _location, numel = saved_id[1:]
            if storage_type is torch.UntypedStorage:
                dtype = torch.uint8
            elif isinstance(storage_type, torch.serialization.StorageType):  # how the unpickler gives torch.*Storage
                dtype = storage_type.dtype
            else:
                raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
            key = str(key)
            if key not in storages:
                record = f"{prefix}/data/{key}"
                if record not in records:
                    raise pickle.UnpicklingError(f"missing storage record {key}")
                raw = bytearray(archive.read(record))
                size = torch.empty((), dtype=dtype).element_size()
                if not isinstance(numel, int) or len(raw) < numel * size:
                    raise pickle.UnpicklingError(f"storage record {key} is shorter than its {numel} elements")
                untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
                storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
            return storages[key]

        unpickler = _stand_in_unpickler_class()(io.BytesIO(archive.read(f"{prefix}/data.pkl")), encoding="utf-8")
        unpickler.persistent_load = persistent_load
        result = unpickler.load()
    torch._utils._validate_loaded_sparse_tensors(weights_only=True)
    return result


def is_torchscript_archive(path: Path | str) -> bool:
    """Whether `path` is a TorchScript archive (a zip with constants.pkl), read without loading it."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _is_torchscript(archive)


def load_torchscript_tensors(path: Path | str, what: str = "TorchScript archive") -> dict[str, Any]:
    """Every tensor a TorchScript archive's modules hold, named as `state_dict()` does, without torch.jit.load."""
    import torch
    path = _check_exists(path, what)
    if not zipfile.is_zipfile(path):
        raise LabError(f"{what} {path} is not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        if not _is_torchscript(archive):
            raise LabError(f"{what} {path} is not a TorchScript archive (no constants.pkl)")
        names = _globals_in(io.BytesIO(archive.read(f"{_zip_prefix(archive, path, what)}/data.pkl")))
    unknown = [name for name in names if name not in _allowed_globals()]
    outside = [name for name in unknown if not name.startswith("__torch__.")]
    if _payload_names(outside):
        raise _refuse(path, what, _payload_names(outside))
    try:
        with torch.serialization.safe_globals([(_stand_in_for(name), name) for name in unknown]):
            root = _read_zip(path, what)
    except LabError:
        raise
    except Exception as error:  # every name it asks for has a stand-in: what fails is its structure
        raise LabError(f"cannot read {what} {path}: the archive is damaged ({_first_line(error)})") from None
    tensors: dict[str, Any] = {}

    def collect(module: Any, prefix: str) -> None:
        state = getattr(module, "state", None)
        if not isinstance(state, dict):
            raise LabError(f"{what} {path}: the module {prefix or 'at the top'} saves its own state "
                           f"({module!r} with a __getstate__), not named attributes; it is not a model "
                           "archive this project reads")
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{name}"] = value
            elif isinstance(value, StandIn) and value.origin.startswith("__torch__."):
                collect(value, f"{prefix}{name}.")

    if not isinstance(root, StandIn):
        raise LabError(f"{what} {path} does not hold a TorchScript module")
    collect(root, "")
    return tensors


def load_npz(path: Path | str, what: str = "checkpoint") -> dict[str, Any]:
    """The arrays of a numpy .npz file, with allow_pickle=False (an object array is refused)."""
    import numpy as np
    path = _check_exists(path, what)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != ZIP_MAGIC and not magic.startswith(b"\x93NUM"):  # np.load would call it a pickle
        raise LabError(f"cannot read {what} {path}: the file is damaged or incomplete (not an .npz archive)")
    try:
        saved = np.load(path, allow_pickle=False)
        if not isinstance(saved, np.lib.npyio.NpzFile):
            raise LabError(f"cannot read {what} {path}: it is a single .npy array, not an .npz archive")
        with saved:
            return {name: saved[name] for name in saved.files}
    except LabError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UnsafeFileError(f"refusing {what} {path}: it holds pickled Python objects, which can run "
                                  "code when loaded; a weights file holds plain arrays only") from None
        raise LabError(f"cannot read {what} {path}: the file is damaged ({_first_line(error)})") from None
    except Exception as error:
        if _cut_short(error) or isinstance(error, zipfile.BadZipFile):
            raise IncompleteFileError(f"cannot read {what} {path}: the file is damaged or incomplete "
                                      f"({_first_line(error)})") from None
        raise LabError(f"cannot read {what} {path}: the file is damaged ({_first_line(error)})") from None


def settings_from_checkpoint(cls: type, values: Any, path: Path | str, script: str, **converters: Any) -> Any:
    """The settings dataclass `cls` from a checkpoint's dict (refusing another script's); `converters` per field."""
    known = {field.name: field for field in dataclasses.fields(cls)}
    if not isinstance(values, dict):
        raise LabError(f"{path} is not a checkpoint of {script}: it stores no settings of {cls.__name__}")
    unknown = sorted(str(name) for name in values if name not in known)
    required = [name for name, field in known.items()
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    missing = sorted(name for name in required if name not in values)
    if unknown or missing:
        detail = "; ".join(part for part in (f"unknown settings: {', '.join(unknown[:8])}" if unknown else "",
                                             f"missing settings: {', '.join(missing[:8])}" if missing else "") if part)
        raise LabError(f"{path} is not a checkpoint of {script} ({detail}); give a checkpoint that {script} "
                       "wrote, or rerun the script that makes it")
    try:
        return cls(**{name: converters[name](value) if name in converters else value for name, value in values.items()})
    except (TypeError, ValueError) as error:
        raise LabError(f"{path} is not a checkpoint of {script}: its settings do not fit {cls.__name__} "
                       f"({error})") from None
