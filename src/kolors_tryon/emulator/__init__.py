"""A local stand-in for the Kling Kolors Virtual Try-On API, with fault knobs.

It speaks the API of KLING_API.md over real HTTP (standard library ``http.server``), so
the service's sandbox mode, its tests and its benchmarks exercise the same client code
as production. Start one with ``EmulatorServer(EmulatorConfig(...)).start()`` or the
``tryon emulator`` command.
"""

from kolors_tryon.emulator.config import EmulatorConfig
from kolors_tryon.emulator.server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer"]
