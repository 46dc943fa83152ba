"""PLC links: what a line's controller reads from the station and how it triggers it.

``registers`` (pure) lays the read-rate counters and the last result out as Modbus input
registers; ``modbus`` serves them with pymodbus (coil 0 = software trigger); ``opcua`` serves
the station as an OPC 30010 AutoID reader device with asyncua (imported only when enabled).
Both are fed by ``readstats`` (every closed window) and are off by default, bound to loopback.
May import config, model and readstats; never store, pipeline, publish or web.
"""

from __future__ import annotations


class PlcError(Exception):
    """A PLC link that cannot start; the message names the setting and what to do."""


__all__ = ["PlcError"]
