#!/usr/bin/env python3
"""Turns per-architecture images of an OCI layout into one multi-architecture image index.

umoci writes single-architecture manifests and knows no platform variant, so this:
  - sets the config's "variant" (arm/v7) where asked, rewriting the config and manifest blobs;
  - gives each manifest's descriptor in index.json its platform (os, architecture, variant);
  - writes an image index blob listing them and tags it in index.json.

  oci_index.py LAYOUT INDEX_TAG MANIFEST_TAG[=VARIANT]...
  oci_index.py --refs LAYOUT TAG=REFERENCE...
      keeps only these entries in index.json, named by a full reference (registry/name:tag):
      `ctr images import` names an image after it (a bare tag gets an "import-DATE" name).
Image layout format: https://github.com/opencontainers/image-spec/blob/main/image-layout.md"""
import hashlib
import json
import sys
from pathlib import Path

REF = "org.opencontainers.image.ref.name"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def put_blob(layout, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def get_blob(layout, digest):
    return json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())


def main(layout, index_tag, specs):
    layout = Path(layout)
    top = json.loads((layout / "index.json").read_text())
    by_tag = {m.get("annotations", {}).get(REF): m for m in top["manifests"]}
    entries = []
    for spec in specs:
        tag, _, variant = spec.partition("=")
        desc = by_tag[tag]
        manifest = get_blob(layout, desc["digest"])
        config = get_blob(layout, manifest["config"]["digest"])
        if variant:
            config["variant"] = variant
            manifest["config"]["digest"], manifest["config"]["size"] = put_blob(layout, config)
            desc["digest"], desc["size"] = put_blob(layout, manifest)
        desc["platform"] = {"os": config["os"], "architecture": config["architecture"]}
        if config.get("variant"):
            desc["platform"]["variant"] = config["variant"]
        entries.append({k: desc[k] for k in ("mediaType", "digest", "size", "platform")})
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}
    digest, size = put_blob(layout, index)
    top["manifests"] = [m for m in top["manifests"] if m.get("annotations", {}).get(REF) != index_tag]
    top["manifests"].append({"mediaType": INDEX_TYPE, "digest": digest, "size": size,
                             "annotations": {REF: index_tag}})
    (layout / "index.json").write_text(json.dumps(top, separators=(",", ":")))


def refs(layout, renames):
    layout = Path(layout)
    top = json.loads((layout / "index.json").read_text())
    names = dict(r.split("=", 1) for r in renames)
    keep = [m for m in top["manifests"] if m.get("annotations", {}).get(REF) in names]
    for m in keep:
        m["annotations"][REF] = names[m["annotations"][REF]]
    top["manifests"] = keep
    (layout / "index.json").write_text(json.dumps(top, separators=(",", ":")))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--refs":
        refs(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 4:
        main(sys.argv[1], sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
