"""YAML output for manifests: keys in the order written, multi-line strings as ``|`` blocks."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """A private dumper, so the block-string style does not leak into other YAML users."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared dicts (labels, probes) are written out in full, not as &anchors


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def dump_all(docs: list[Any]) -> str:
    return "---\n".join(dump(d) for d in docs)
