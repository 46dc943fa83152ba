#!/usr/bin/env python3
"""Generate the shipped keyboard-layout table from the installed xkb-data.

Run on a build machine with xkb-data, the X11 Compose file (libx11-data) and the
``xkbcommon`` binding (libxkbcommon through cffi)::

    .venv/bin/pip install xkbcommon && .venv/bin/python scripts/gen_keyboard_layouts.py

For every layout and variant that xkb-data's rules/evdev.xml lists, libxkbcommon compiles
the keymap (rules evdev, model pc105) and its state machine tells what each key a scanner
uses types with no modifier, Shift, AltGr (the right Alt key as the layout defines it) and
AltGr + Shift, with Caps Lock off and on, which of those are dead keys, and what the
keypad's decimal key types with Num Lock on. The dead-key sequences (a dead key then one
key) come from the en_US.UTF-8 Compose table through libxkbcommon's compose API.

Writes daemon/scanstation/data/keyboard_layouts.json.gz (read by scanstation.hw.keymaps)
and daemon/scanstation/data/keyboard_layouts.txt (the names, read by the config check).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from xkbcommon import xkb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "daemon" / "scanstation" / "data" / "keyboard_layouts.json.gz"
NAMES = ROOT / "daemon" / "scanstation" / "data" / "keyboard_layouts.txt"
RULES = Path("/usr/share/X11/xkb/rules/evdev.xml")
COMPOSE = Path("/usr/share/X11/locale/en_US.UTF-8/Compose")

EVDEV_OFFSET = 8  # xkb keycode = evdev code + 8
KEY_LEFTSHIFT, KEY_RIGHTALT, KEY_CAPSLOCK, KEY_NUMLOCK, KEY_KPDOT = 42, 100, 58, 69, 83
# The keys that type text: the number row, the three letter rows, space and the ISO key.
TEXT_KEYS = [*range(2, 14), *range(16, 28), *range(30, 42), *range(43, 54), 57, 86]
LEVEL_MODIFIERS = [(), (KEY_LEFTSHIFT,), (KEY_RIGHTALT,), (KEY_RIGHTALT, KEY_LEFTSHIFT)]
DEAD = "\0"  # prefix of a dead key's keysym name in the table

# Names the project used before it read xkb, and spellings people use that xkb lacks.
ALIASES = {"uk": "gb", "ch(de)": "ch"}


def layout_names() -> list[str]:
    """Every layout and layout(variant) that xkb-data's evdev rules list."""
    names: list[str] = []
    for layout in ET.parse(RULES).getroot().iter("layout"):
        item = layout.find("configItem")
        assert item is not None
        name = item.findtext("name") or ""
        names.append(name)
        for variant in layout.iter("variant"):
            vitem = variant.find("configItem")
            if vitem is not None and vitem.findtext("name"):
                names.append(f"{name}({vitem.findtext('name')})")
    return names


def split_name(name: str) -> tuple[str, str]:
    if "(" in name:
        layout, variant = name[:-1].split("(", 1)
        return layout, variant
    return name, ""


def typed(
    keymap: xkb.Keymap, code: int, modifiers: tuple[int, ...], *, caps: bool, num: bool = False
) -> str:
    """What ``code`` types with ``modifiers`` held; a dead key as DEAD + its keysym name."""
    state = keymap.state_new()
    for lock, on in ((KEY_CAPSLOCK, caps), (KEY_NUMLOCK, num)):
        if on:
            state.update_key(lock + EVDEV_OFFSET, xkb.KeyDirection.XKB_KEY_DOWN)
            state.update_key(lock + EVDEV_OFFSET, xkb.KeyDirection.XKB_KEY_UP)
    for modifier in modifiers:
        state.update_key(modifier + EVDEV_OFFSET, xkb.KeyDirection.XKB_KEY_DOWN)
    sym = state.key_get_one_sym(code + EVDEV_OFFSET)
    name = xkb.keysym_get_name(sym) if sym else ""
    if name.startswith("dead_"):
        return DEAD + name
    text = state.key_get_string(code + EVDEV_OFFSET)
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return ""
    return text


def layout_table(context: xkb.Context, name: str) -> dict[str, object]:
    layout, variant = split_name(name)
    keymap = context.keymap_new_from_names(
        rules="evdev", model="pc105", layout=layout, variant=variant or None
    )
    keys: dict[str, list[str]] = {}
    caps: dict[str, list[str]] = {}
    for code in TEXT_KEYS:
        plain = [typed(keymap, code, mods, caps=False) for mods in LEVEL_MODIFIERS]
        locked = [typed(keymap, code, mods, caps=True) for mods in LEVEL_MODIFIERS]
        if any(plain):
            keys[str(code)] = plain
        if locked != plain:
            caps[str(code)] = locked
    decimal = typed(keymap, KEY_KPDOT, (), caps=False, num=True) or "."
    return {"keys": keys, "caps": caps, "keypad_decimal": decimal}


def dead_sequences(context: xkb.Context, tables: dict[str, dict[str, object]]) -> dict[str, str]:
    """Compose results of a dead key then one key: "dead_acute e" -> "é".

    The second key is written as the text it types, or as a dead key's keysym name; only
    the dead keys and texts that some layout types are looked up.
    """
    table = context.compose_table_new_from_buffer(COMPOSE.read_bytes(), "en_US.UTF-8")
    dead_names: set[str] = set()
    texts: set[str] = {" "}
    for entry in tables.values():
        keys = entry["keys"]
        assert isinstance(keys, dict)
        caps = entry["caps"]
        assert isinstance(caps, dict)
        for levels in [*keys.values(), *caps.values()]:
            for value in levels:
                if value.startswith(DEAD):
                    dead_names.add(value[1:])
                elif len(value) == 1:
                    texts.add(value)
    out: dict[str, str] = {}
    for dead in sorted(dead_names):
        for second in sorted(texts) + [DEAD + d for d in sorted(dead_names)]:
            state = table.compose_state_new()
            state.feed(xkb.keysym_from_name(dead))
            if second.startswith(DEAD):
                sym = xkb.keysym_from_name(second[1:])
            elif second == " ":
                sym = xkb.keysym_from_name("space")
            else:
                sym = _keysym_for_char(second)
            if not sym:
                continue
            state.feed(sym)
            if state.get_status() == xkb.ComposeStatus.XKB_COMPOSE_COMPOSED:
                result = state.get_utf8()
                if result:
                    key = f"{dead} {second[1:] if second.startswith(DEAD) else second}"
                    out[key] = result
    return out


def _keysym_for_char(ch: str) -> int:
    code = ord(ch)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code  # Latin-1 keysyms equal their code points
    return 0x01000000 + code  # Unicode keysyms


def xkb_data_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "xkb-data"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    context = xkb.Context()
    tables: dict[str, dict[str, object]] = {}
    for name in layout_names():
        try:
            tables[name] = layout_table(context, name)
        except xkb.XKBKeymapCreationFailure:
            print(f"skipped {name}: libxkbcommon cannot compile it", file=sys.stderr)
    compose = dead_sequences(context, tables)
    data = {
        "source": f"xkb-data {xkb_data_version()}, rules evdev, model pc105; "
        f"Compose {COMPOSE}; generated by scripts/gen_keyboard_layouts.py",
        "aliases": ALIASES,
        "layouts": tables,
        "compose": compose,
    }
    raw = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    OUT.write_bytes(gzip.compress(raw.encode(), compresslevel=9, mtime=0))
    NAMES.write_text(
        "# Keyboard layouts as xkb spells them (generated by scripts/gen_keyboard_layouts.py)\n"
        + "".join(f"{name}\n" for name in sorted(tables))
        + "".join(f"{alias}={target}\n" for alias, target in sorted(ALIASES.items()))
    )
    print(f"{len(tables)} layouts, {len(compose)} dead-key sequences -> {OUT.relative_to(ROOT)}")
    print(f"{OUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
