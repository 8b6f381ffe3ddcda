"""Register the modules of the library that a config's ``default_scope`` names.

One pair of tools serves mmdet and mmseg configs: ``default_scope = 'mmdet'`` (from
``mmdet::_base_/default_runtime.py``) registers mmdet's modules, ``'mmseg'`` mmseg's.
"""

import importlib

from mmengine.config import Config

SUPPORTED_SCOPES = ('mmdet', 'mmseg')


def register_scope_modules(cfg: Config) -> str:
    """Import and register every module of the library named by ``cfg.default_scope``.

    Args:
        cfg (Config): A config with ``default_scope`` 'mmdet' or 'mmseg'.

    Returns:
        str: The scope.
    """
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ValueError(
            f'default_scope must be one of {SUPPORTED_SCOPES}, got {scope!r}: inherit '
            "'mmdet::_base_/default_runtime.py' or 'mmseg::_base_/default_runtime.py', or set it"
        )
    library = importlib.import_module(f'{scope}.utils')
    library.register_all_modules(init_default_scope=False)
    return scope
