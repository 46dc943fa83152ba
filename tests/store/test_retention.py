"""Image retention deletes old images and keeps new ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scanstation.services.retention import prune_images


def test_retention_prunes_only_images_older_than_the_limit(tmp_path: Path) -> None:
    old = tmp_path / "2026/01/01/old.jpg"
    new = tmp_path / "2026/11/23/new.jpg"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\xff\xd8")
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    assert prune_images(tmp_path, days=30) == 1
    assert not old.exists()
    assert not old.parent.exists()  # empty day folders go too
    assert new.exists()
    assert prune_images(tmp_path, days=0) == 0  # 0 keeps images forever
