"""The exception classes a package defines, for the error-root tests of each package."""

from __future__ import annotations

import importlib
import inspect
import pkgutil


def defined_exceptions(*packages: str) -> dict[str, type[BaseException]]:
    """``module.Class`` → class, for every public exception class defined in the packages'
    modules (imported here). Private classes (a leading underscore) are internal signals that
    never leave their module and are left out; ``__main__`` modules are not imported (running
    them is running the command)."""
    found: dict[str, type[BaseException]] = {}
    for package_name in packages:
        package = importlib.import_module(package_name)
        names = [package_name]
        names += [
            info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")
        ]
        for module_name in names:
            if module_name.endswith("__main__"):
                continue
            module = importlib.import_module(module_name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                    and not name.startswith("_")
                ):
                    found[f"{module.__name__}.{obj.__qualname__}"] = obj
    return found
