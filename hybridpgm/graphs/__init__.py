"""Declarative graphical models over named variables."""

__all__: list[str] = []
