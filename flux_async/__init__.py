"""flux_async."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flux_async")
except PackageNotFoundError:  # a checkout on sys.path without installation (e.g. the GPU machine's .pth)
    __version__ = "unknown"
