"""Files shipped with the package: sample frames and scans, the demo catalog, label maps.

No code of its own but the maintainer's script that renders the sample frames.
"""
