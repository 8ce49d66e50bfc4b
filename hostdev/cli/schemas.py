"""``hostdev schema [NAME]``: the JSON Schema of each document ``--json`` prints."""

from __future__ import annotations

import argparse
import json

from hostdev.cli.documents import DOCUMENTS, json_schema, schema_id_of
from hostdev.errors import BadInput


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the schema of ``args.name``, or every name with its schema id (with
    ``--json``, as a document; a schema is JSON already, ``--json`` changes nothing)."""
    if args.name is None:
        if args.json:
            from hostdev.cli.documents import SchemasOutput

            names = {name: schema_id_of(model) for name, model in DOCUMENTS.items()}
            print(SchemasOutput(documents=names).model_dump_json(by_alias=True, indent=2))
            return 0
        width = max(len(name) for name in DOCUMENTS)
        for name, model in DOCUMENTS.items():
            print(f"{name:<{width}}  {schema_id_of(model)}")
        return 0
    if args.name not in DOCUMENTS:
        raise BadInput(f"no document named {args.name!r}: choose one of"
                       f" {', '.join(DOCUMENTS)} ('hostdev schema' lists them)")
    print(json.dumps(json_schema(args.name), indent=2))
    return 0
