"""Validates Prometheus Operator manifests (PodMonitor, ServiceMonitor)
against schemas/monitoring.coreos.com_v1.json, strictly.

kubernetes-validate bundles the built-in Kubernetes schemas only; it
reports custom resources as "no schema". Their CRD cannot be installed from
a package registry, so this repository keeps a JSON schema of its own for
the fields its manifests use.

Usage: python3 validate_monitoring.py FILE.yaml...  (exit 1 on any error)
"""

import json
import pathlib
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA = json.loads((HERE / "schemas" / "monitoring.coreos.com_v1.json").read_text())


def validate(path):
    errors = []
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    if not documents:
        errors.append(f"{path}: no documents")
    for doc in documents:
        kind = doc.get("kind")
        if kind not in SCHEMA["definitions"]:
            errors.append(f"{path}: kind {kind!r} has no schema here")
            continue
        schema = dict(SCHEMA["definitions"][kind], definitions=SCHEMA["definitions"])
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path) or "(top)"
            errors.append(f"{path}: {kind} {where}: {error.message}")
    return errors


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    errors = [e for p in paths for e in validate(p)]
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    if not errors:
        print(f"INFO {len(paths)} Prometheus Operator manifest(s) valid")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
