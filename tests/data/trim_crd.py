"""Make kuberay_rayjob_v1_subset.json: the KubeRay RayJob v1 CRD schema cut down to what our manifest uses.

Source: ray-project/kuberay, tag v1.7.0, ray-operator/config/crd/bases/ray.io_rayjobs.yaml (25k lines).
Every object on a path that ``cluster/rayjob.yaml`` uses keeps all its property names with their type,
enum, pattern and required list, and ``additionalProperties: false`` (kubectl's strict field
validation refuses unknown fields); subtrees the manifest does not enter keep only their type.

    python tests/data/trim_crd.py ray.io_rayjobs.yaml cluster/rayjob.yaml \
        > tests/data/kuberay_rayjob_v1_subset.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

KEEP = ("type", "enum", "pattern", "required", "format", "minimum", "x-kubernetes-int-or-string")


def trim(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """The part of ``schema`` that checks ``value``, with one level of context around it."""
    out = {k: schema[k] for k in KEEP if k in schema}
    if "anyOf" in schema:
        out["anyOf"] = schema["anyOf"]
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        out["properties"] = {
            k: trim(props[k], value[k])
            if k in value
            else {x: props[k][x] for x in ("type",) if x in props[k]}
            for k in props
        }
        out["additionalProperties"] = False
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        extra = schema["additionalProperties"]
        out["additionalProperties"] = {k: extra[k] for k in (*KEEP, "anyOf") if k in extra}
    elif isinstance(value, list) and "items" in schema:
        items: dict[str, Any] = {}
        for v in value:  # merge what every item needs
            t = trim(schema["items"], v)
            for k, p in t.get("properties", {}).items():
                if "properties" in p or k not in items.get("properties", {}):
                    items.setdefault("properties", {})[k] = p
            items.update({k: v for k, v in t.items() if k != "properties"})
        out["items"] = items or {k: schema["items"][k] for k in ("type",) if k in schema["items"]}
    return out


def main(crd_path: str, manifest_path: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    manifest = yaml.safe_load(Path(manifest_path).read_text())
    schema = trim(version["schema"]["openAPIV3Schema"], manifest)
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": "RayJob"}
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    schema["$comment"] = (
        "Trimmed from ray-project/kuberay v1.7.0 ray-operator/config/crd/bases/ray.io_rayjobs.yaml "
        "(RayJob v1) by tests/data/trim_crd.py"
    )
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
