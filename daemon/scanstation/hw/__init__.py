"""Hardware adapters below the sources and outputs: keyboard layouts (keymaps.py), serial
ports (serialport.py), GPIO feedback and conveyor I/O (gpio.py), systemd notification and the
watchdog (systemd.py). Hardware libraries are imported lazily; each adapter has a fake or a mock
factory for tests. May import: config, model.
"""


class HardwareError(Exception):
    """A device, pin or layout that cannot be used; the message says what to do."""
