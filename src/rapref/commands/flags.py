"""The command line, derived from the settings (`rapref.settings`): a flag for every setting a command's config
declares, its default in `--help` from the dataclass, and the config built back from the flags, a `--config` file and
the environment, with errors naming each setting as the user gave it.

    add_flags(parser, Sampling, config=True)   # --temperature TEMPERATURE  sampling temperature (default: 0.7)
    cfg = from_args(Sampling, args).config     # --temperature -1: "--temperature must be at least 0, got -1";
                                               # `temperature: -1` in study.yaml: "study.yaml: temperature must ..."

Values come from the dataclass defaults (an environment variable, `env=`, replaces the default when set), then the
`--config` file, then the command line; a dict setting given later adds to the earlier dict (recipe overrides), any
other replaces it. A value no setting means (an empty path, an empty item of a comma list, a weight nan:
`rapref.settings.well_formed`) is refused naming the flag or the file's key, and so are two spellings of one setting
that disagree (`--kernels pinned --native-kernels`).
"""

from __future__ import annotations

import argparse
import os
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from rapref.io import InputError
from rapref.settings import (Entry, base_type, build, choices_of, coerce, dashes, entries, read_settings, show_config,
                             well_formed)

SPELLED = "_spelled"  # on an argparse namespace: dest -> the flag as the user typed it


def shown_default(entry: Entry) -> str | None:
    """The default as --help says it (None: nothing to say: a switch, a positional, a required setting)."""
    spec, value = entry.spec, entry.default
    if entry.is_bool or spec.positional or value is MISSING:
        return None
    if spec.shown is not None:
        return spec.shown
    if value is None:
        return "none"
    if spec.show:
        return spec.show(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)



# --- flags -----------------------------------------------------------------------------------------------------------


class _Given(argparse.Action):
    """Stores a setting's value and the flag as typed (an alias too), so that an error can name it. Two spellings of
    one setting that disagree (`--kernels avx2 --native-kernels`, a flag and its alias) are refused; one flag given
    twice keeps argparse's rule, the last wins (a script appends a flag to override its own)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is argparse.SUPPRESS:  # a `*` positional given nothing
            return
        value = self.const if self.nargs == 0 else values
        spelled = getattr(namespace, SPELLED, None)
        if spelled is None:
            spelled = {}
            setattr(namespace, SPELLED, spelled)
        name = option_string or self.metavar or self.dest
        earlier = spelled.get(self.dest)
        if option_string and earlier not in (None, name) and getattr(namespace, self.dest, value) != value:
            switch = parser._option_string_actions.get(earlier)  # a switch is named alone, a flag with its value
            shown = earlier if switch is not None and switch.nargs == 0 else \
                f"{earlier} {getattr(namespace, self.dest)}"
            raise argparse.ArgumentError(None, f"argument {name}: contradicts {shown}: choose one")  # as typed
        setattr(namespace, self.dest, value)
        spelled[self.dest] = name


def _cli_type(entry: Entry):
    """What reads a flag's text: its parse function or type, then `well_formed` (no empty path, no empty item of a
    list, no infinite weight); argparse names the flag in the error."""
    parse, hint = entry.spec.parse, entry.hint
    if parse is None:
        base = base_type(entry.hint)
        origin = typing.get_origin(base)
        if base in (int, float):
            return base
        if base is str:
            parse = str
        elif entry.spec.positional and origin in (list, tuple) and typing.get_args(base)[:1] in ((str,), ()):
            parse, hint = str, str  # argparse reads each item of a list positional
        else:
            raise TypeError(f"setting {entry.path}: a {entry.hint} value needs parse= to be read from the command "
                            "line")

    def convert(text):
        try:
            return well_formed(parse(text), hint, entry.spec.empty)
        except ValueError as err:  # InputError too: argparse prints it after the flag's name
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_flags(parser: argparse.ArgumentParser, cls, *, config: bool = False, config_help: str | None = None) -> None:
    """A flag for every setting of `cls` that has one here, its help ending with the default from the dataclass.

    `config`: also `--config FILE` (a YAML file of settings: defaults the command line overrides) and
    `--show-config`; the settings a file may give are then never required on the command line."""
    groups: dict[str, Any] = {}
    seen: dict[str, Entry] = {}
    for entry in entries(cls):
        if entry.flag is None:
            continue
        if entry.flag in seen:  # one flag for two settings (e.g. a seed the schema and the relabeling share)
            if seen[entry.flag].default != entry.default:
                raise TypeError(f"flag --{entry.flag} is shared by settings with different defaults")
            continue
        seen[entry.flag] = entry
        target = parser
        if entry.group:
            target = groups.get(entry.group) or groups.setdefault(entry.group, parser.add_argument_group(entry.group))
        _add(target, entry, required=entry.default is MISSING and not config)
    if config:
        parser.add_argument("--config", metavar="FILE", type=_path, help=_escape(config_help or (
            "a YAML file of these settings (keys as --show-config prints them): they replace the defaults, and the "
            "flags given here override them (default: none)")))
        parser.add_argument("--show-config", action="store_true",
                            help="print the resolved settings (defaults, --config file and flags merged, checked) as "
                                 "YAML and exit")


def _path(text: str) -> str:
    try:
        return well_formed(text, str)
    except ValueError as err:  # '' would be read as no file at all
        raise argparse.ArgumentTypeError(str(err)) from None


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _add(target, entry: Entry, required: bool) -> None:
    spec = entry.spec
    text = spec.help
    if entry.default is MISSING and not spec.positional and not required:
        text += " (required; a --config file may give it)"
    shown = shown_default(entry)
    if shown is not None and not entry.is_bool:
        text += f" (default: {shown}{f', or ${spec.env} when set' if spec.env else ''})"
    common = {"dest": entry.dest, "action": _Given, "default": argparse.SUPPRESS, "help": _escape(text)}
    if spec.positional:
        origin = typing.get_origin(base_type(entry.hint))
        nargs = "*" if origin in (list, tuple, dict) or base_type(entry.hint) is dict else None
        target.add_argument(entry.dest, action=_Given, default=argparse.SUPPRESS, help=_escape(text),
                            type=_cli_type(entry), nargs=nargs, metavar=spec.metavar, choices=choices_of(spec))
    elif entry.is_bool:
        target.add_argument(*entry.option_strings(), **common, nargs=0, const=not entry.default)
    else:
        choices = choices_of(spec)
        metavar = spec.metavar or (None if choices else entry.dest.upper())
        target.add_argument(*entry.option_strings(), **common, type=_cli_type(entry), choices=choices,
                            metavar=metavar, required=required)
    for flag, value, help_text in spec.switches:
        target.add_argument(dashes(flag), dest=entry.dest, action=_Given, nargs=0, const=value,
                            default=argparse.SUPPRESS, help=_escape(help_text))


@dataclass
class Resolved:
    """A built config and, for each setting the user gave, how they spelled it (`--temperature`, `f.yaml: key`)."""

    config: Any
    given: dict[str, str]


def from_args(cls, args: argparse.Namespace, *, file: str | None = None, extra: dict | None = None) -> Resolved:
    """The config a command line asks for: defaults (an environment variable, `env=`, where set), then `file`
    (default: the --config flag's), then `extra` ({path: (value, spelling)}, given by the command itself), then the
    flags.
    Any broken rule names the setting as it was given; one never given is named by its flag."""
    table = entries(cls)
    values: dict[str, tuple[Any, str]] = {}
    file = file if file is not None else getattr(args, "config", None)
    if file:
        for path, given in read_settings(cls, file).items():
            _put(values, _entry(table, path), given)
    for entry in table:
        text = os.environ.get(entry.spec.env) if entry.spec.env else None
        if text and entry.path not in values:
            name = f"{dashes(entry.flag)} (or ${entry.spec.env})" if entry.flag else f"${entry.spec.env}"
            values[entry.path] = (coerce(entry, text, name), name)
    for path, given in (extra or {}).items():
        _put(values, _entry(table, path), given)
    spelled = getattr(args, SPELLED, {}) or {}
    for entry in table:
        if entry.flag is not None and hasattr(args, entry.dest):
            _put(values, entry, (getattr(args, entry.dest), spelled.get(entry.dest, dashes(entry.flag))))

    def name(path: str) -> str:
        if path in values:
            return values[path][1]
        entry = next((e for e in table if e.path == path), None)
        return dashes(entry.flag) if entry is not None and entry.flag else path

    missing = [e for e in table if e.default is MISSING and e.path not in values]
    if missing:
        what = missing[0].flag and dashes(missing[0].flag) or missing[0].path
        raise InputError(f"{what} is required{f' (or `{missing[0].path}:` in the --config file)' if file else ''}")
    return Resolved(build(cls, {p: v for p, (v, _) in values.items()}, name), {p: s for p, (_, s) in values.items()})


def _entry(table: list[Entry], path: str) -> Entry:
    return next(e for e in table if e.path == path)


def _put(values: dict, entry: Entry, given: tuple) -> None:
    value, spelled = given
    if entry.is_dict and isinstance(value, list):  # KEY=VALUE items of a positional, each read as {KEY: VALUE}
        value = {k: v for item in value for k, v in item.items()}
    if entry.is_dict and isinstance(value, dict):  # a dict given later adds to the earlier one (overrides)
        before = values[entry.path][0] if entry.path in values else (entry.default or {})
        value = {**before, **value}
    values[entry.path] = (value, spelled)


def show_if_asked(cfg, args) -> bool:
    """`--show-config`: print `cfg` and return True (the command then stops), else False."""
    if getattr(args, "show_config", False):
        print(show_config(cfg), end="")
        return True
    return False
