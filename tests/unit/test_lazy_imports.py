"""runner/lazy_imports.py: the IRI grammar put off, and every answer of jsonschema's `iri` checks
the same as with the real module loaded at import (each side in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("rfc3987_syntax")

SCRIPT = """
import json, sys
deferred = False
if sys.argv[1] == "deferred":
    from jupyter_ext.runner.lazy_imports import defer_iri_grammar
    deferred = defer_iri_grammar()
import nbformat, jsonschema
loaded_at_import = type(sys.modules["rfc3987_syntax"].__dict__.get("RFC3987_SYNTAX_TERMS")) is list
V = jsonschema.Draft202012Validator
answers = [
    V({"format": fmt}, format_checker=V.FORMAT_CHECKER).is_valid(value)
    for fmt in ("iri", "iri-reference")
    for value in ("http://example.com/a b", "http://ex.com/\\u00fc", "::::", "rel/path", "http://[::1]:80/x", 3)
]
import rfc3987_syntax
print(json.dumps({"deferred": deferred, "loaded_at_import": loaded_at_import, "answers": answers,
                  "terms": len(rfc3987_syntax.RFC3987_SYNTAX_TERMS)}))
"""


def run(mode: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_iri_grammar_is_put_off_and_checks_answer_the_same() -> None:
    real, deferred = run("real"), run("deferred")
    assert real["loaded_at_import"] and not real["deferred"]
    assert deferred["deferred"] and not deferred["loaded_at_import"], "importing nbformat built no grammar"
    assert deferred["answers"] == real["answers"], "the `iri` checks load the real module when first used"
    assert deferred["terms"] == real["terms"], "any other name of the module is there once asked for"
