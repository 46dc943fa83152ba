"""The OPC Foundation nodesets the OPC UA server imports: bundled as published, and the one
fix-up applied at import gives the AutoID structures the layout of the nodeset's own binary
schema (OPC 10000-3 §8.48: a subtype's fields start with its base type's)."""

from __future__ import annotations

import base64
import doctest
import hashlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import resources

from scanstation.plc import autoid

UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
OPC = "{http://opcfoundation.org/BinarySchema/}"
FOLDER = resources.files("scanstation.plc").joinpath("nodesets")


def test_the_nodesets_are_bundled_as_published_with_their_licence() -> None:
    readme = FOLDER.joinpath("README.md").read_text("utf-8")
    for name in autoid.NODESET_FILES:
        data = FOLDER.joinpath(name).read_bytes()
        assert f"{hashlib.sha256(data).hexdigest()}  {name}" in readme  # byte-identical
        assert b"OPC Foundation MIT License 1.00" in data[:2000]
    licence = FOLDER.joinpath("LICENSE.txt").read_text("utf-8")
    assert "Permission is hereby granted, free of charge" in licence
    di, ai = (ET.fromstring(FOLDER.joinpath(n).read_bytes()) for n in autoid.NODESET_FILES)
    assert [u.text for u in di.iter(UA + "Uri")] == [autoid.DI_URI]
    assert [u.text for u in ai.iter(UA + "Uri")] == [autoid.AUTOID_URI, autoid.DI_URI]
    [model] = [m for m in ai.iter(UA + "Model") if m.get("ModelUri") == autoid.AUTOID_URI]
    assert model.get("Version") == autoid.AUTOID_MODEL_VERSION


def binary_schema(nodeset: ET.Element) -> dict[str, list[str]]:
    """The nodeset's embedded OPC Binary TypeDictionary: structure → its data fields."""
    [dictionary] = [
        v for v in nodeset.iter(UA + "UAVariable") if v.get("SymbolicName") == "AutoID_BinarySchema"
    ]
    [value] = [e for e in dictionary.iter() if e.tag.endswith("}ByteString")]
    text = base64.b64decode("".join((value.text or "").split())).decode("utf-8")
    schema = ET.fromstring(text)
    layouts = {}
    for structure in schema.iter(OPC + "StructuredType"):
        fields = structure.findall(OPC + "Field")
        lengths = {f.get("LengthField") for f in fields}  # an array's element count
        layouts[structure.get("Name") or ""] = [
            f.get("Name") or ""
            for f in fields
            # not the optional fields' encoding mask, nor arrays' lengths: no fields of theirs
            if f.get("TypeName") != "opc:Bit" and f.get("Name") not in lengths
        ]
    return layouts


def definitions(nodeset: ET.Element) -> dict[str, list[str]]:
    return {
        (d.get("Name") or "").split(":", 1)[1]: [f.get("Name") or "" for f in d]
        for d in nodeset.iter(UA + "Definition")
        if d.get("IsUnion") != "true" and d.find(UA + "Field") is not None
    }


def test_completed_definitions_have_the_layout_of_the_nodesets_binary_schema() -> None:
    published = ET.fromstring(FOLDER.joinpath(autoid.NODESET_FILES[1]).read_bytes())
    imported = ET.fromstring(autoid.nodeset_text(autoid.NODESET_FILES[1]).encode("utf-8"))
    schema = binary_schema(published)
    structures = {name: fields for name, fields in definitions(imported).items() if name in schema}
    assert {"ScanResult", "OpticalScanResult", "ScanSettings", "RfidScanResult"} <= set(structures)
    for name, fields in structures.items():
        assert fields == schema[name], name
    assert structures["OpticalScanResult"] == [
        *("CodeType", "ScanData", "Timestamp", "Location"),
        *("Grade", "Position", "Symbology", "ImageId"),
    ]
    # As published, the subtype lacked its base's fields (what the fix-up is for).
    assert definitions(published)["OpticalScanResult"][0] == "Grade"
    # Nothing else changed: the same nodes, in the same order.
    ids = re.compile(r'NodeId="([^"]+)"')
    assert ids.findall(autoid.nodeset_text(autoid.NODESET_FILES[1])) == ids.findall(
        FOLDER.joinpath(autoid.NODESET_FILES[1]).read_text("utf-8")
    )


def test_the_fix_up_doctest() -> None:
    assert doctest.testmod(autoid).failed == 0


def test_a_daemon_with_opc_ua_off_never_imports_asyncua_nor_reads_the_nodesets() -> None:
    """OPC UA is off by default, and then costs the daemon nothing at start."""
    script = (
        "import sys\n"
        "from scanstation import app\n"
        "from scanstation.config import parse_config\n"
        "from scanstation.readstats import ReadStats\n"
        "config = parse_config({}, environ={})\n"
        "assert not config.opcua.enabled\n"
        "links = app.init_plc_links(config, ReadStats(), {'cam': lambda: None})\n"
        "print(links, 'asyncua' in sys.modules, 'scanstation.plc.opcua' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["[]", "False", "False"]
