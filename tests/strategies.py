"""Hypothesis strategies for request bodies, shared by the in-process and the local-stack API properties."""

from __future__ import annotations

from hypothesis import strategies as st

# The bucket that the in-process intake names; bodies name uploads in it and elsewhere.
BUCKET = "bucket"
# Any text JSON can carry, lone surrogates ("\ud800") included: valid JSON, not encodable as UTF-8.
TEXT = st.text(st.characters(exclude_categories=()))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies close to valid ones, so that the checks deep inside the payload models are reached too.
PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "command": st.lists(st.text(max_size=8), max_size=3) | JSON,
        "files": st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3) | JSON,
        "language": st.sampled_from(["python", ""]) | JSON,
        "stdin": JSON,
        "env": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2) | JSON,
        "timeout_seconds": st.floats(allow_nan=False, allow_infinity=False) | JSON,
        "shell": JSON,
    },
)
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={
        "id": st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True) | st.text(max_size=140) | JSON,
        "task_type": st.sampled_from(["execute", "compile", "analyze", "deploy", "", "EXECUTE"]) | JSON,
        "payload": PAYLOADS | JSON,
        "payload_uri": st.sampled_from([f"s3://{BUCKET}/uploads/none", "s3://other/uploads/x", ""]) | JSON,
        "extra": JSON,
    },
)
BODIES = NEAR_VALID | JSON
