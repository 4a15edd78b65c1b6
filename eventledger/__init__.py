"""eventledger's Python client: ``from eventledger.client import Client, AsyncClient``.

The service itself lives in the ``domain``, ``infrastructure``, ``projections`` and
``api`` packages of the same distribution.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eventledger")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
