"""Flags of `rapref show`, derived from `rapref.show.ShowConfig`."""

from __future__ import annotations

from rapref.settings import add_flags, from_args


def add_arguments(p) -> None:
    from rapref.show import ShowConfig

    add_flags(p, ShowConfig)


def run(args) -> str:
    from rapref.show import ShowConfig, show

    text = show(from_args(ShowConfig, args).config)
    print(text)
    return text
