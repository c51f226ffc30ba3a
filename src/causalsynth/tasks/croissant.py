"""A Croissant 1.0 card (MLCommons' JSON-LD metadata for ML datasets) for exported incident cases.

It names the cases' files (``FileSet`` globs under the export's root) and one record set per kind of
file, each field a column of it (and ``case``, the file's path: which case a record is of), so a
Croissant reader (``mlcroissant``) lists the records without knowing the layout. Written beside
``cases.json`` as ``croissant.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

# The JSON-LD context of Croissant 1.0, as mlcroissant writes it.
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet", "format": "cr:format",
    "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path", "recordSet": "cr:recordSet",
    "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated", "replace": "cr:replace",
    "samplingRate": "cr:samplingRate", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform"}
DATA_TYPES = {"int": "sc:Integer", "float": "sc:Float", "bool": "sc:Boolean", "text": "sc:Text"}


def record_set(name: str, files: str, pattern: str, description: str, columns: dict[str, tuple[str, str]]) -> tuple:
    """A file set of the CSV files matching ``pattern`` and its record set: ``columns`` maps each column to
    (its type, a key of ``DATA_TYPES``, and its meaning)."""
    def field(column: str, data_type: str, meaning: str, extract: dict) -> dict:
        return {"@type": "cr:Field", "@id": f"{name}/{column}", "name": column, "description": meaning,
                "dataType": DATA_TYPES[data_type], "source": {"fileSet": {"@id": files}, "extract": extract}}

    file_set = {"@type": "cr:FileSet", "@id": files, "name": files, "encodingFormat": "text/csv", "includes": pattern}
    fields = [field("case", "text", "The case's file (its folder names the root cause and the fault)",
                    {"fileProperty": "filepath"})]
    fields += [field(column, kind, meaning, {"column": column}) for column, (kind, meaning) in columns.items()]
    return file_set, {"@type": "cr:RecordSet", "@id": name, "name": name, "description": description,
                      "field": fields}


def write_card(directory: Path, name: str, description: str, record_sets: list[tuple], version: str) -> Path:
    """``croissant.json`` in ``directory``: the dataset ``name`` (``version``: its package's) and its
    ``record_sets`` (``record_set``'s)."""
    card = {"@context": CONTEXT, "@type": "sc:Dataset", "name": name, "description": description,
            "conformsTo": "http://mlcommons.org/croissant/1.0", "version": version,
            "citeAs": f"causalsynth {version}, a structural causal model of software delivery and e-commerce",
            "distribution": [files for files, _ in record_sets], "recordSet": [records for _, records in record_sets]}
    path = Path(directory) / "croissant.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path
