#!/usr/bin/env python3
"""Validates the OpenAPI document the real binary serves at /openapi.json with
openapi-spec-validator (PyPI; scripts/test.sh installs it when missing): the document must be a
valid OpenAPI 3.1 description. That it matches what the routes do is checked by
crates/busbar-http/tests/openapi.rs.

Usage: validate.py PATH/TO/busbar
"""
import json, re, subprocess, sys, tempfile, urllib.request

from openapi_spec_validator import validate


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [sys.argv[1], "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0",
             "--kafka-addr", "127.0.0.1:0"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            http = None
            for line in proc.stderr:
                m = re.search(r"ready in .* http://(\S+) ", line)
                if m:
                    http = m.group(1)
                    break
            if not http:
                sys.exit("busbar exited before it was ready")
            with urllib.request.urlopen(f"http://{http}/openapi.json", timeout=30) as r:
                doc = json.load(r)
        finally:
            proc.terminate()
            proc.wait(30)
    validate(doc)  # raises with the offending part when invalid
    ops = sum(len(item) for item in doc["paths"].values())
    print(f"/openapi.json: valid OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, {ops} operations")


if __name__ == "__main__":
    main()
