"""The example configurations of docs/examples, with the files they name made elsewhere.

The examples point at /etc/scanstation (a recall list, an MQTT password, TLS material, a
webhook secret), and `--check-config` refuses a config whose referenced files are missing.
`scripts/example-files.sh` makes those files (the arm64 smoke uses it too); `with_files_under`
gives a copy of an example pointing at them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"


def example(name: str) -> Path:
    return EXAMPLES / f"{name}.toml"


def make_referenced_files(root: Path) -> None:
    """What the guides tell the operator to put in /etc/scanstation, under `root`."""
    subprocess.run(
        [str(REPO / "scripts" / "example-files.sh"), str(root)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def with_files_under(name: str, root: Path) -> Path:
    """The example with its /etc/scanstation paths moved under `root`."""
    copy = root.parent / f"{name}.toml"
    copy.write_text(example(name).read_text().replace("/etc/scanstation", str(root)))
    return copy
