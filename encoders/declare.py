"""Declaring a setting once: default, help, choices, limits and what it changes, as dataclass field metadata.

Settings classes (`encoders.EncoderSpec`, `pipeline.settings.JobSettings`) are frozen dataclasses
whose fields are made with `setting(...)`. Everything that lists settings reads these declarations
instead of repeating the list: the CLI flags and the Flex Template parameters, the manifest, the
Parquet metadata, the model fingerprint and the "finished run with different settings" check.
Adding a setting means declaring it and writing the code that uses it, nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# What a setting changes; this decides where it is recorded and compared.
VECTORS = "vectors"  # the vectors: model fingerprint, Parquet metadata, manifest, rerun check
RECORDS = "records"  # which records are read and how: manifest, rerun check
RECORDED = "recorded"  # speed or file layout only: manifest
RUN = "run"  # this invocation only (where to write, whether to replace): not recorded
ROLES = (VECTORS, RECORDS, RECORDED, RUN)
# What kind of place a str setting names (`Declaration.path`). A local one means the launcher's disk: it is
# made absolute at launch (`absolute_path`), so a worker with another working directory reads the same file.
PATH = "path"  # a file, directory or glob: local unless it has a scheme (gs://, s3://, memory://, ...)
MODEL_PATH = "model path"  # the same, or a model name or URL: local only when it names an existing path
# The value of a setting chosen when the encoder is built, on the machine that runs it (`encoders.auto`):
# a choice of a str setting, or the flag's text for an int setting declared with auto=True (held as None).
AUTO = "auto"


@dataclass(frozen=True)
class Declaration:
    """What a settings field says about itself (see `setting`)."""

    help: str
    role: str
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    minimum: int | None = None
    metavar: str | None = None
    group: str = ""
    flag: str | None = None  # the flag's name when it differs from the field's; "" for no flag (derived)
    negation: tuple[str, str] | None = None  # (flag, help) setting a bool | None field to False
    pattern: str | None = None  # a regular expression the text of a value matches (for forms, e.g. a date)
    auto: bool = False  # an int | None setting whose flag also takes AUTO, held as None (a str one lists AUTO)
    path: str | None = None  # PATH or MODEL_PATH: the value names a place, local ones are made absolute
    # Declared after outputs were first fingerprinted: left out of the fingerprint while it holds its default,
    # so those outputs keep their fingerprint and stay reusable (--skip_existing).
    later: bool = False
    required: bool = False  # a run must be given it (a template parameter that is not optional)
    dated: bool = False  # {run_date} and {previous_date} in its value are filled in (`pipeline.cli`)
    headline: bool = False  # one of the facts a report shows first (`pipeline.report`)

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices


@dataclass(frozen=True)
class Setting:
    """One declared field, as the derived views see it."""

    name: str
    kind: type  # str, int, bool, or tuple for a repeatable flag
    optional: bool  # None is a value: "not given, use the default described in help"
    default: object
    declaration: Declaration

    @property
    def flag(self) -> str:
        """The CLI flag's name without dashes ("" when the setting has none)."""
        own = self.declaration.flag
        return self.name if own is None else own


def setting(default: object, help: str, role: str, **declaration) -> typing.Any:
    """A dataclass field carrying its declaration; keyword arguments are `Declaration`'s fields."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    return dataclasses.field(default=default, metadata={"setting": Declaration(help, role, **declaration)})


@functools.cache
def declared(cls: type) -> tuple[Setting, ...]:
    """The declared settings of a settings class, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        declaration = field.metadata.get("setting")
        if declaration is None:
            continue
        kind, optional = _kind(hints[field.name])
        if declaration.auto and (kind is not int or not optional):
            raise TypeError(f"{field.name}: auto=True needs an `int | None` field (None is the automatic value)")
        found.append(Setting(field.name, kind, optional, field.default, declaration))
    return tuple(found)


def _kind(hint: object) -> tuple[type, bool]:
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple, optional
    if hint not in (str, int, bool):
        raise TypeError(f"settings may be str, int, bool or tuple[str, ...], not {hint}")
    return hint, optional


def parse_auto_int(text: str) -> int | None:
    """The value of an int setting declared with auto=True from its flag's text: None for AUTO, else the int."""
    return None if text == AUTO else int(text)


def is_local_path(value: str, kind: str, base: str) -> bool:
    """Whether a value of a setting declared with path=kind names a place on this machine's disk.

    base: the directory a relative value is relative to (the launcher's working directory).
    """
    if "://" in value:
        return False
    if kind == MODEL_PATH:
        return os.path.exists(os.path.join(base, os.path.expanduser(value)))
    return True


def absolute_path(value: str, kind: str, base: str) -> str:
    """A local value (see `is_local_path`) as an absolute path from base; any other value unchanged.

    Only the directories before a glob's first wildcard are normalised (`a/./b/*` -> `/base/a/b/*`):
    `..` after a wildcard keeps its meaning.
    """
    if not is_local_path(value, kind, base):
        return value
    joined = os.path.join(base, os.path.expanduser(value))
    wildcard = re.search(r"[*?\[]", joined)
    if wildcard is None:
        return os.path.normpath(joined)
    cut = joined.rfind("/", 0, wildcard.start())
    head = os.path.normpath(joined[:cut] or "/")
    return head.rstrip("/") + joined[cut:]


def local_paths(instance: object, base: str) -> list[tuple[Setting, str]]:
    """(setting, value) of every set path setting of instance whose value is on this machine's disk."""
    found = []
    for item in declared(type(instance)):
        value = getattr(instance, item.name)
        if item.declaration.path is None or not value:
            continue
        for one in value if isinstance(value, tuple) else (value,):
            if is_local_path(one, item.declaration.path, base):
                found.append((item, one))
    return found


def with_absolute_paths(given: Mapping[str, object], cls: type, base: str) -> dict[str, object]:
    """given ({name: value}, e.g. parsed flags or a manifest's settings) with the path settings of cls made absolute."""
    fixed = dict(given)
    for item in declared(cls):
        kind, value = item.declaration.path, given.get(item.name)
        if kind is None or not value:
            continue
        if isinstance(value, (tuple, list)):
            fixed[item.name] = type(value)(absolute_path(v, kind, base) for v in value)
        else:
            fixed[item.name] = absolute_path(value, kind, base)
    return fixed


def check_declared(instance: object, error: type[Exception]) -> None:
    """Raise `error` with a one-line message when a value breaks its declared choices or minimum.

    A recorded setting must also be UTF-8 text: a path given in bytes the system could not decode
    (Python holds them as lone surrogates) would otherwise fail the job when its manifest is written.
    None (not given, or AUTO for an auto int setting) is not checked: it is resolved later.
    """
    for item in declared(type(instance)):
        value = getattr(instance, item.name)
        if value is None:
            continue
        name = f"--{item.flag}" if item.flag else item.name
        texts = value if isinstance(value, tuple) else (value,)
        bad = next((t for t in texts if isinstance(t, str) and not is_utf8(t)), None)
        if bad is not None and item.declaration.role != RUN:
            raise error(f"{name} {escaped(bad)} is not valid UTF-8, and it is recorded as text: rename the file or "
                        "directory (\\xNN shows a byte that is not UTF-8)")
        allowed = item.declaration.allowed()
        if allowed is not None and value not in allowed:
            raise error(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        minimum = item.declaration.minimum
        if minimum is not None and value < minimum:
            wanted = "positive" if minimum == 1 else f"at least {minimum}"
            raise error(f"{name} must be {wanted}, got {value}")


def is_utf8(text: str) -> bool:
    """Whether text can be written as UTF-8: False when it holds lone surrogates (e.g. undecodable file names)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(text: str) -> str:
    """text as UTF-8 can hold it, for messages: a byte the system could not decode (a surrogate escape, as
    `os.fsdecode` and `sys.argv` give it) as \\xNN, as it is on disk; any other lone surrogate as \\udNNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def values(instance: object, roles: Iterable[str]) -> dict[str, object]:
    """{name: value} of the settings whose role is one of roles, as JSON values (tuples become lists)."""
    roles = set(roles)
    return {
        item.name: json_value(getattr(instance, item.name))
        for item in declared(type(instance))
        if item.declaration.role in roles
    }


def names(cls: type, roles: Iterable[str]) -> tuple[str, ...]:
    """Names of the settings of cls whose role is one of roles."""
    roles = set(roles)
    return tuple(item.name for item in declared(cls) if item.declaration.role in roles)


def json_value(value: object) -> object:
    """A setting's value as the manifest stores it (JSON: true/false, numbers, null, lists)."""
    return list(value) if isinstance(value, tuple) else value


def metadata_text(value: object) -> str:
    """A setting's value as Parquet key-value metadata stores it.

    One convention for manifest and Parquet: strings as they are, everything else as its
    JSON text (`true`, `256`, `null`), so `normalize` reads `true` in both.
    """
    return value if isinstance(value, str) else json.dumps(json_value(value))


def from_mapping(cls: type, given: Mapping[str, object]) -> object:
    """An instance of cls from {name: value}, ignoring keys that are not its settings."""
    own = {item.name for item in declared(cls)}
    return cls(**{k: v for k, v in given.items() if k in own})


def from_metadata(cls: type, metadata: Mapping[str, str], roles: Iterable[str]) -> dict[str, object]:
    """{name: value} of the settings of cls with one of roles, read back from `metadata_text` strings.

    The inverse of writing `values(..., roles)` through `metadata_text`: a str setting's text is its
    value (`null` is None when the setting is optional), any other is parsed as JSON (lists become
    tuples). A setting missing from metadata (declared after the file was written) is left out, so
    it keeps its default. Raises ValueError when a value cannot be read.
    """
    roles = set(roles)
    found: dict[str, object] = {}
    for item in declared(cls):
        text = metadata.get(item.name)
        if item.declaration.role not in roles or text is None:
            continue
        if item.kind is str:
            found[item.name] = None if item.optional and text == "null" else text
            continue
        value = json.loads(text)
        found[item.name] = tuple(value) if isinstance(value, list) else value
    return found
