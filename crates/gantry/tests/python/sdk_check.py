"""Evaluates flags through real SDKs against a running Gantry server.

Usage: sdk_check.py BASE_URL CLIENT_TOKEN CASES_JSON CACHE_DIR

CASES_JSON is a list of {"flag": NAME, "type": "boolean"|"string", "context": {"userId":
..., "sessionId": ..., "properties": {...}}}. Prints one JSON object: what Unleash's Python SDK (local
evaluation, after fetching /api/client/features) and the OpenFeature OFREP provider
(remote evaluation) answered for each case. The Unleash client is destroyed at the end,
which sends its metrics report.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from UnleashClient import UnleashClient


def main():
    base, token, cases_path, cache_dir = sys.argv[1:5]
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)

    client = UnleashClient(
        url=f"{base}/api",
        app_name="gantry-suite",
        instance_id="python-1",
        custom_headers={"Authorization": token},
        cache_directory=cache_dir,
        refresh_interval=1,
        metrics_interval=1,
    )
    client.initialize_client()
    unleash = []
    for case in cases:
        ctx = case["context"]
        variant = client.get_variant(case["flag"], ctx)
        unleash.append(
            {
                "enabled": client.is_enabled(case["flag"], ctx),
                "variant": {
                    "name": variant.get("name"),
                    "enabled": variant.get("enabled"),
                    "payload": variant.get("payload"),
                },
            }
        )
    client.destroy()

    api.set_provider(OFREPProvider(base, headers_factory=lambda: {"Authorization": token}))
    of = api.get_client()
    ofrep = []
    for case in cases:
        ctx = case["context"]
        attributes = dict(ctx.get("properties", {}))
        for key in ("sessionId", "remoteAddress"):
            if key in ctx:
                attributes[key] = ctx[key]
        context = EvaluationContext(targeting_key=ctx.get("userId"), attributes=attributes)
        if case.get("type") == "string":
            details = of.get_string_details(case["flag"], "fallback", context)
        else:
            details = of.get_boolean_details(case["flag"], False, context)
        ofrep.append(
            {
                "value": details.value,
                "variant": details.variant,
                "reason": str(details.reason.value if hasattr(details.reason, "value") else details.reason),
                "error": str(details.error_code.value) if details.error_code else None,
            }
        )
    json.dump({"unleash": unleash, "ofrep": ofrep}, sys.stdout)


if __name__ == "__main__":
    main()
