"""The OPC Foundation information models the OPC UA server imports, and their AutoID names.

OPC 30010 (AutoID) builds on OPC 10000-100 (Devices, "DI"): the server imports the two
NodeSet2 files bundled in ``nodesets/`` (DI first), then instantiates the station as an
``OpticalReaderDeviceType`` object under DI's ``DeviceSet``. This module holds what that
needs and is pure (no asyncua): the files, the one fix-up the AutoID nodeset needs before
import (:func:`complete_structure_definitions`), the node ids of the standard's nodes (from
``Opc.Ua.AutoID.NodeIds.csv`` / ``Opc.Ua.Di.NodeIds.csv``, numbers in each model's own
namespace) and the status values the station reports.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Literal

DI_URI = "http://opcfoundation.org/UA/DI/"
AUTOID_URI = "http://opcfoundation.org/UA/AutoID/"
NODESET_FILES = ("Opc.Ua.Di.NodeSet2.xml", "Opc.Ua.AutoID.NodeSet2.xml")
"""Imported in this order (AutoID requires DI)."""

# DI (Opc.Ua.Di.NodeIds.csv)
DI_DEVICE_SET = 5001
DI_DEVICE_HEALTH = 6208
"""DeviceType's optional DeviceHealth (DeviceHealthEnumeration)."""
DI_DEVICE_CLASS = 6470

# AutoID (Opc.Ua.AutoID.NodeIds.csv)
OPTICAL_READER_DEVICE_TYPE = 1008
OPTICAL_SCAN_EVENT_TYPE = 1009
AUTOID_SCAN_EVENT_TYPE = 1004
OPTICAL_READER_SCAN = 7043
"""OpticalReaderDeviceType's Scan(Settings) → (Results: OpticalScanResult[], Status)."""
AUTOID_DEVICE_INFO = 6026
AUTOID_LAST_SCAN_DATA = 6055
AUTOID_LAST_SCAN_TIMESTAMP = 6096
SCAN_RESULT_TYPE = 3001

AUTOID_MODEL_VERSION = "1.01"
"""The bundled AutoID nodeset's model version (its ``<Model Version>``)."""

CODE_TYPE = "RAW:STRING"
"""OPC 30010 §9.1.3: the ScanData is its String member (the symbology is the
OpticalScanResult's own ``Symbology`` field)."""

Verdict = Literal["good", "noread", "multiple", "rejected"]
STATUS: dict[Verdict, int] = {"good": 0, "noread": 8, "multiple": 9, "rejected": 12}
"""A window's result → AutoIdOperationStatusEnumeration (OPC 30010 §9.2.1): SUCCESS,
NO_IDENTIFIER, MULTIPLE_IDENTIFIERS, MATCH_ERROR."""
DEVICE_NOT_READY = 17

DEVICE_STATUS = {"Idle": 0, "Error": 1, "Scanning": 2, "Busy": 3}
"""DeviceStatusEnumeration (OPC 30010 §9.2.2)."""
DEVICE_HEALTH = {
    "NORMAL": 0,
    "FAILURE": 1,
    "CHECK_FUNCTION": 2,
    "OFF_SPEC": 3,
    "MAINTENANCE_REQUIRED": 4,
}
"""DeviceHealthEnumeration (OPC 10000-100 §5.5.4)."""

_UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"


def nodeset_text(name: str) -> str:
    """One bundled nodeset, as text (the AutoID one with its fix-up applied)."""
    text = resources.files("scanstation.plc").joinpath("nodesets", name).read_text("utf-8")
    return complete_structure_definitions(text) if "AutoID" in name else text


def complete_structure_definitions(xml: str) -> str:
    """Prepend its base type's fields to every structure subtype's ``Definition`` lacking them.

    OPC 10000-3 §8.48: a subtype's StructureDefinition lists the base type's fields first,
    then its own. The AutoID 1.01 nodeset lists only each subtype's own fields (e.g.
    ``OpticalScanResult``: Grade, Position, Symbology, ImageId, without ScanResult's CodeType,
    ScanData, Timestamp, Location), so a stack building the structure from the Definition
    would put the wrong fields on the wire. The nodeset's own binary schema has the complete
    layout; this restores it. Text is edited in place (the rest of the file is untouched).

    >>> doc = '''<UANodeSet xmlns="http://opcfoundation.org/UA/2011/03/UANodeSet.xsd">
    ... <UADataType NodeId="ns=1;i=1" BrowseName="1:A"><References/>
    ... <Definition Name="1:A"><Field Name="X" DataType="String" /></Definition></UADataType>
    ... <UADataType NodeId="ns=1;i=2" BrowseName="1:B"><References>
    ... <Reference ReferenceType="HasSubtype" IsForward="false">ns=1;i=1</Reference></References>
    ... <Definition Name="1:B"><Field Name="Y" DataType="Float" /></Definition></UADataType>
    ... </UANodeSet>'''
    >>> fixed = ET.fromstring(complete_structure_definitions(doc))
    >>> [f.get("Name") for f in fixed.iter(_UA + "Field")]
    ['X', 'X', 'Y']
    """
    root = ET.fromstring(xml)  # noqa: S314 (the bundled nodeset, not outside input)
    types: dict[str, tuple[str, str | None, list[str]]] = {}
    for node in root.iter(_UA + "UADataType"):
        definition = node.find(_UA + "Definition")
        if definition is None or definition.get("IsUnion") == "true":
            continue
        refs = node.find(_UA + "References")
        base = next(
            (
                (r.text or "").strip()
                for r in (refs if refs is not None else [])
                if r.get("ReferenceType") == "HasSubtype" and r.get("IsForward") == "false"
            ),
            None,
        )
        fields = [f.get("Name") or "" for f in definition.findall(_UA + "Field")]
        types[node.get("NodeId") or ""] = (definition.get("Name") or "", base, fields)

    def own_inner(name: str) -> str | None:
        """The text between ``<Definition Name="name" …>`` and its ``</Definition>``."""
        match = re.search(r'<Definition Name="' + re.escape(name) + r'"[^>]*?>', xml)
        if match is None or match.group(0).endswith("/>"):
            return None
        return xml[match.end() : xml.index("</Definition>", match.end())]

    def lacks_base(nodeid: str) -> bool:
        _, base, fields = types[nodeid]
        return base in types and fields[: len(full_names(base))] != full_names(base)

    def full_names(nodeid: str) -> list[str]:
        _, base, fields = types[nodeid]
        return full_names(base) + fields if lacks_base(nodeid) and base else fields

    def full_inner(nodeid: str) -> str:
        name, base, _ = types[nodeid]
        own = own_inner(name) or ""
        return full_inner(base) + own if lacks_base(nodeid) and base else own

    completed = {
        types[n][0]: full_inner(n)
        for n in types
        if lacks_base(n) and own_inner(types[n][0]) is not None
    }
    for name, text in completed.items():
        match = re.search(r'<Definition Name="' + re.escape(name) + r'"[^>]*?>', xml)
        assert match is not None
        end = xml.index("</Definition>", match.end())
        xml = xml[: match.end()] + text + xml[end:]
    return xml
