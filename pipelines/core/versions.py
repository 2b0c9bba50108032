"""Versions recorded in manifests, so a result can be traced to the code that made it."""

from __future__ import annotations

import sys
from importlib import metadata


def package_versions(*names: str) -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in ("olymp", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
