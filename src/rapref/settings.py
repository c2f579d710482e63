"""Each setting declared once: a dataclass field holds its type, default, help and rule, and all a user meets is
derived from it: the command line's flags with their defaults in `--help` (`rapref.commands.flags`), the keys of a
`--config` YAML file, `--show-config`, and errors that name the setting as the user gave it (the flag typed, the key
in the file, the field's name from Python). transformers' `HfArgumentParser` and TRL's `TrlParser` do the same for
their configs; this one adds nested configs flattened under their own flag names, old spellings kept as aliases,
parse functions for values written as text (a score scale `1-10`), and rules checked wherever a config is built.

    @dataclass
    class Sampling:
        temperature: float = setting(0.7, "sampling temperature", rule=at_least(0))

        def __post_init__(self):
            check(self)                        # Sampling(temperature=-1): "temperature must be at least 0, got -1"

    load(Sampling, "study.yaml")               # `temperature: -1` in it: "study.yaml: temperature must ..."
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from rapref.io import InputError

KEY = "rapref"  # where a field's declaration sits in its metadata


@dataclass(frozen=True)
class Spec:
    """How one setting meets the user (`setting` and `nested` build it; see the module notes)."""

    help: str = ""
    flag: str | bool | None = None  # None: the field's name with dashes; False: no flag (a file or Python sets it)
    aliases: tuple[str, ...] = ()  # other flag spellings that keep working (old names), also read as file keys
    choices: tuple | Callable[[], tuple] | None = None  # a callable for registries filled at import time
    parse: Callable[[Any], Any] | None = None  # text (or a file's value) -> value; ValueError names the problem
    rule: Callable[[Any], str | None] | None = None  # value -> what is wrong ("must be at least 1, got 0") or None
    shown: str | None = None  # the default as --help words it, where the value alone would mislead
    show: Callable[[Any], str] | None = None  # value -> text, for --help
    metavar: str | None = None
    group: str | None = None  # the --help section
    positional: bool = False
    env: str | None = None  # an environment variable whose value, when set, is the default
    switches: tuple[tuple[str, Any, str], ...] = ()  # (flag, value, help): flags that set one fixed value
    flags: dict | None = None  # a nested config: which of its fields get a flag here ({field: flag or None})
    empty: bool = False  # '' is a value of its own (an empty goal header), not a slip `well_formed` refuses


def setting(default=MISSING, help: str = "", *, factory=MISSING, **spec) -> Any:
    """A dataclass field declared with everything the user meets (see `Spec` for the keywords)."""
    given = {"default": default} if factory is MISSING else {"default_factory": factory}
    return field(**given, metadata={KEY: Spec(help=help, **spec)})


def nested(cls, help: str = "", *, flags: dict | None = None, group: str | None = None, **defaults) -> Any:
    """A field holding a smaller config, with the values that differ here. `flags`: the fields that get a flag on
    this command, {field: flag name, or None for its own}; the rest are set from a file or Python (None: all)."""
    return field(default_factory=lambda: cls(**defaults),
                 metadata={KEY: Spec(help=help, flags=flags, group=group)})


def like(cls, name: str, default=MISSING, **changes) -> Any:
    """Another config's field declared here again by reference: its help, rule and choices, its default unless
    given (a study that asks the same question of the user with another default)."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    spec = dataclasses.replace(spec_of(source), **changes)
    if default is MISSING and source.default_factory is not MISSING:
        return field(default_factory=source.default_factory, metadata={KEY: spec})
    return field(default=source.default if default is MISSING else default, metadata={KEY: spec})


def spec_of(f: dataclasses.Field) -> Spec:
    return f.metadata.get(KEY) or Spec()


# --- rules ----------------------------------------------------------------------------------------------------------


class SettingError(InputError):
    """A broken rule. The message names settings by field path (from Python that is what the caller wrote); the
    builders below put the user's spelling in their place: `SettingError("{} must be at least 2", "samples")`."""

    def __init__(self, template: str, *fields: str):
        self.template, self.fields = template, fields
        super().__init__(template.format(*fields))

    def under(self, prefix: str) -> "SettingError":
        return SettingError(self.template, *(prefix + f for f in self.fields))


def _literal(text: str) -> str:
    return str(text).replace("{", "{{").replace("}", "}}")


def at_least(low: float) -> Callable:
    return lambda v: None if v >= low else f"must be at least {low:g}, got {v:g}"


def expect(what: str, ok: Callable[[Any], bool]) -> Callable:
    """A rule from a test and the words for what it accepts ("must be WHAT, got VALUE"); the test also sees values
    a YAML file or Python gave, so it checks the type too.

    >>> expect("a whole number of at least 1", whole(1))(2.5)
    'must be a whole number of at least 1, got 2.5'
    """
    return lambda v: None if ok(v) else f"must be {what}, got {v!r}"


def whole(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def each_in(choices) -> Callable:
    """A list setting whose every item is one of `choices`."""
    def rule(values):
        bad = [v for v in values if v not in choices]
        return f"must name only {', '.join(choices)}, got {bad[0]!r}" if bad else None

    return rule


def check(obj) -> None:
    """Every field's choices and rule (a nested config checks itself); call from `__post_init__`."""
    for f in dataclasses.fields(obj):
        spec, value = spec_of(f), getattr(obj, f.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        choices = choices_of(spec)
        if choices and value not in choices:
            raise SettingError(f"{{}} must be one of {_literal(', '.join(map(str, choices)))}, "
                               f"got {_literal(repr(value))}", f.name)
        problem = spec.rule(value) if spec.rule else None
        if problem:
            raise SettingError("{} " + _literal(problem), f.name)


def choices_of(spec: Spec):
    return tuple(spec.choices()) if callable(spec.choices) else spec.choices


# --- value types ----------------------------------------------------------------------------------------------------


def comma_separated(kind: type = str) -> Callable:
    """A parse function for tuple settings written `a,b,c` on the command line (a list in a file).

    >>> comma_separated(int)("1, 2,3"), comma_separated()("")
    ((1, 2, 3), ())
    >>> comma_separated(float)("1,,2")
    Traceback (most recent call last):
    ValueError: expected comma-separated numbers, got '1,,2' (item 2 is empty)
    """
    def parse(value):
        if isinstance(value, str):
            items = [s.strip() for s in value.split(",")]
            items = items if any(items) else []  # '' (or ','): no items at all, e.g. no sources to exclude
            what = f"expected comma-separated {_KIND_WORDS.get(kind, kind.__name__)}, got {value!r}"
            if "" in items:  # `1,,2` or `1,2,`: a lost item, not a shorter list
                raise ValueError(f"{what} (item {items.index('') + 1} is empty)")
            try:
                return tuple(kind(s) for s in items)
            except ValueError:
                raise ValueError(what) from None
        return tuple(check_type(list(value) if isinstance(value, tuple) else value, list[kind], "value"))

    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


_KIND_WORDS = {int: "whole numbers", float: "numbers", str: "names"}


def check_type(value, hint, key: str, strict: bool = True):
    """`value` checked against a type hint (bool, int, float, str, lists, tuples and dicts of them, `X | None`,
    Literal); returns it, with the harmless conversions (int -> float, a single string -> a one-element list, a list
    -> a tuple). Hints it cannot judge (classes) pass unless `strict`.

    >>> check_type("sigmoid", list[str], "algorithm.loss_type"), check_type([1, 10], tuple[float, float], "scale")
    (['sigmoid'], (1.0, 10.0))
    >>> check_type("abc", float, "algorithm.beta")
    Traceback (most recent call last):
    rapref.io.InputError: algorithm.beta: expected a number, got 'abc'
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return check_type(value, option, key, strict)
            except ValueError as err:
                errors.append(err)
        if not errors:
            raise InputError(f"{key}: unexpected value {value!r}")
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise InputError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        item = args[0] if args else typing.Any
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise InputError(f"{key}: expected a list, got {value!r}")
        return [check_type(v, item, f"{key}[{i}]", strict) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{key}: expected a list, got {value!r}")
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise InputError(f"{key}: expected {len(items)} values, got {value!r}")
        return tuple(check_type(v, t, f"{key}[{i}]", strict) for i, (v, t) in enumerate(zip(value, items)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise InputError(f"{key}: expected a mapping, got {value!r}")
        item = args[1] if len(args) == 2 else typing.Any
        return {k: check_type(v, item, f"{key}.{k}", strict) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{key}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # a whole number past float's range (1e309 and up)
            raise InputError(f"{key}: expected a number, got a whole number past float's range") from None
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{key}: expected text, got {value!r}")
        return value
    if hint is typing.Any or not strict:
        return value
    raise InputError(f"{key}: cannot check a value against {hint!r}")


def well_formed(value, hint, empty: bool = False):
    """`value`, unless it is what no setting of type `hint` means, whatever its own rule says: empty text (a path ''
    reads as the current folder, an endpoint '' as none; unless the setting declares `empty`), an empty item of a list or name of a mapping, or a weight
    of a mapping of numbers that is not finite (a number, or a list of them, is judged by its setting's own rule, in
    its words: generate's "--goals: nan is not a finite number"). Raises ValueError saying what is wrong; the caller
    names the setting.

    >>> well_formed({"helpfulness": float("nan")}, dict[str, float])
    Traceback (most recent call last):
    ValueError: expected finite numbers, got helpfulness=nan
    """
    base = base_type(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if base is str and value == "" and not empty:
        raise ValueError("must not be empty")
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and str in args and "" in value:
        raise ValueError(f"expected no empty item, got {list(value)!r}")
    if (origin is dict or base is dict) and isinstance(value, dict):
        for key, item in value.items():
            if key == "":
                raise ValueError(f"expected no empty name, got {dict(value)!r}")
            if args[1:] == (float,) and isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"expected finite numbers, got {key}={item!r}")
    return value


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `5e-7` as a string; rapref's files mean a float."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def read_yaml_file(path: str | Path, what: str = "settings file"):
    """A YAML file's content; a missing file or bad YAML is one line naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    try:
        return read_yaml(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    except ValueError as err:  # PyYAML's int() of a number past Python's 4300-digit limit
        raise InputError(f"{path}: not readable ({str(err).splitlines()[0][:120]})") from None


# --- the settings of a config, flattened -------------------------------------------------------------------------


@dataclass
class Entry:
    """One setting of a config tree: its dotted path, declaration, type and the default it has at that place."""

    path: str
    spec: Spec
    hint: Any
    default: Any  # MISSING: required
    flag: str | None  # None: no flag on this command
    group: str | None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_") if self.flag else self.path

    @property
    def is_bool(self) -> bool:
        return base_type(self.hint) is bool

    @property
    def is_dict(self) -> bool:
        hint = base_type(self.hint)
        return hint is dict or typing.get_origin(hint) is dict

    def option_strings(self) -> list[str]:
        return [dashes(self.flag), *(dashes(a) for a in self.spec.aliases)]


def dashes(flag: str) -> str:
    """A flag's name as typed: `n` -> `-n`, `max-new-tokens` -> `--max-new-tokens`; given with dashes, as given."""
    return flag if flag.startswith("-") else f"-{flag}" if len(flag) == 1 else f"--{flag}"


def base_type(hint):
    """`X | None` -> X."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def entries(cls, prefix: str = "", instance=None, flags: dict | None = None, group: str | None = None) -> list[Entry]:
    """Every setting of `cls`, nested configs flattened (`sampling.temperature`), with the defaults `instance` (the
    enclosing config's default for this one) gives them and the flag each has here."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        spec, path = spec_of(f), prefix + f.name
        declared = f.default_factory() if f.default_factory is not MISSING else f.default
        default = getattr(instance, f.name) if instance is not None else declared
        if spec.shown is not None and default != declared:  # the words were for the field's own default
            spec = dataclasses.replace(spec, shown=None)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            out += entries(type(default), f"{path}.", default, spec.flags, spec.group or group)
            continue
        if flags is None:
            flag = None if spec.flag is False else spec.flag or f.name.replace("_", "-")
        else:
            flag = flags[f.name] or spec.flag or f.name.replace("_", "-") if f.name in flags else None
        out.append(Entry(path, spec, hints[f.name], default, flag, spec.group or group))
    return out


def _nested_paths(cls, prefix: str = "") -> set[str]:
    found = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            found |= {prefix + f.name} | _nested_paths(type(default), f"{prefix}{f.name}.")
    return found


# --- building a config ----------------------------------------------------------------------------------------------


def load(cls, path: str | Path | None = None, **python) -> Any:
    """A config from a YAML file of settings and keyword overrides (a script's way); errors name the file's keys."""
    values = {p: v for p, (v, _) in read_settings(cls, path).items()} if path else {}
    values.update(python)
    return build(cls, values, lambda p: f"{path}: {p}" if path and p not in python else p)


def build(cls, values: dict[str, Any], name: Callable[[str], str] = str) -> Any:
    """`cls` with the settings at dotted paths in `values` (nested configs built from the defaults they have in
    `cls`); a broken rule is raised as an InputError naming each setting by `name(path)`."""
    try:
        return _build(cls, values, "", None)
    except SettingError as err:
        raise InputError(err.template.format(*map(name, err.fields))) from None


def _build(cls, values: dict, prefix: str, instance):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = prefix + f.name
        default = getattr(instance, f.name) if instance is not None else \
            f.default_factory() if f.default_factory is not MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            if any(p.startswith(f"{path}.") for p in values):
                kwargs[f.name] = _build(type(default), values, f"{path}.", default)
            elif instance is not None:
                kwargs[f.name] = default
        elif path in values:
            kwargs[f.name] = values[path]
        elif instance is not None:
            kwargs[f.name] = default
    try:
        return cls(**kwargs)
    except SettingError as err:
        raise err.under(prefix) from None
    except InputError as err:  # a check written before this module: "--max-new-tokens must ..." names a field
        legacy = re.match(r"--([a-z][a-z0-9-]*)", str(err))
        names = {f.name for f in dataclasses.fields(cls)}
        if legacy and legacy.group(1).replace("-", "_") in names:
            raise SettingError("{}" + _literal(str(err)[legacy.end():]),
                               prefix + legacy.group(1).replace("-", "_")) from None
        raise


# --- files ----------------------------------------------------------------------------------------------------------


def read_settings(cls, path: str | Path) -> dict[str, tuple[Any, str]]:
    """A YAML file of `cls`'s settings -> {dotted path: (value, "FILE: key")}: nested sections or dotted keys, an
    alias for an old name; an unknown key is refused with the nearest known one."""
    data = read_yaml_file(path) or {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    table = entries(cls)
    by_key = {e.path: e for e in table}
    for e in table:
        by_key.update({a.lstrip("-").replace("-", "_"): e for a in e.spec.aliases})
    sections = _nested_paths(cls)
    out = {}

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            full = f"{prefix}{key}"
            if full in sections and isinstance(value, dict):
                walk(value, f"{full}.")
                continue
            entry = by_key.get(full)
            if entry is None:
                raise InputError(f"{path}: unknown key {full!r}{_suggest(full, table)}")
            spelled = f"{path}: {full}"
            out[entry.path] = (coerce(entry, value, spelled), spelled)

    walk(data, "")
    return out


def _suggest(key: str, table: list[Entry]) -> str:
    flags = {e.dest: e.path for e in table if e.flag}
    if key in flags:
        return f" (did you mean {flags[key]!r}?)"
    close = difflib.get_close_matches(key, [e.path for e in table], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(entry: Entry, value, name: str):
    """A value from a file or the environment, read as the setting's type (its parse function first)."""
    if value is None:
        return check_type(value, entry.hint, name)
    if entry.spec.parse is not None:
        try:
            return well_formed(entry.spec.parse(value), entry.hint, entry.spec.empty)
        except ValueError as err:
            raise InputError(f"{name}: {err}") from None
    if isinstance(value, str) and base_type(entry.hint) in (int, float):
        try:
            value = base_type(entry.hint)(value)
        except ValueError:
            pass  # check_type names it
    value = check_type(value, entry.hint, name)
    try:
        return well_formed(value, entry.hint, entry.spec.empty)
    except ValueError as err:
        raise InputError(f"{name}: {err}") from None


def plain(value):
    """A config as YAML and JSON write it: tuples as lists, nested configs as mappings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def typed(value, hint=None):
    """`plain(value)` with each number written as its setting's type says: a whole number given to a float setting
    (a default written `(1, 2, 3)` or `0`) as a float, so that the text `show_config` prints reads back as it was
    printed (`- 1` would be printed `- 1.0` after the round trip)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value))
        return {f.name: typed(getattr(value, f.name), hints.get(f.name)) for f in dataclasses.fields(value)}
    base = base_type(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is list and args or args[1:] == (Ellipsis,):  # list[X], tuple[X, ...]
            items = [args[0]] * len(value)
        else:  # tuple[X, Y]
            items = list(args) if len(args) == len(value) else [None] * len(value)
        return [typed(v, t) for v, t in zip(value, items)]
    if (origin is dict or base is dict) and isinstance(value, dict):
        return {k: typed(v, args[1] if len(args) == 2 else None) for k, v in value.items()}
    return plain(value)


def show_config(cfg) -> str:
    """`--show-config`: every setting with its resolved value, as a --config file takes it back (and prints again
    alike: `typed`)."""
    return yaml.safe_dump(typed(cfg), sort_keys=False)
