"""The command line's sub-commands beyond the daemon: devices and hid-replay (devices.py),
the fleet table (fleet.py), analytics reports (report.py), the on-device checks (doctor.py)
and the benchmarks (bench/).
They sit on top and may import anything; nothing imports them but cli.py.
"""


class CommandLineError(Exception):
    """A sub-command given something it cannot use (exit 2)."""
