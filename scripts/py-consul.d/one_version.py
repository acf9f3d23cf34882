"""A pytest plugin (`-p one_version`) that keeps py-consul's tests of one
Consul version label: its conftest runs every server test once per label
in CONSUL_VERSIONS, against the same cairn binary each time. The label is
PY_CONSUL_VERSION_LABEL (default the newest, 1.22.0); tests without a
version parameter are kept. The tests themselves are not changed."""

from __future__ import annotations

import os

LABEL = os.environ.get("PY_CONSUL_VERSION_LABEL", "1.22.0")


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        labels = [str(v) for v in params.values() if str(v).count(".") == 2 and str(v)[:1].isdigit()]
        (keep if not labels or LABEL in labels else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
