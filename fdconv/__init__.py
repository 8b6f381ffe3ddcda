"""Alias of :mod:`fdconv_mm` for the paper's quick start: ``from fdconv import FDConv``."""

from fdconv_mm import FDConv

__all__ = ['FDConv']
