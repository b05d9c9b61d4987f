"""Schemathesis hooks for scripts/check-api (loaded through SCHEMATHESIS_HOOKS).

- A serializer for `application/toml`: the monitor files and deploy configs are TOML text,
  which the document describes as a string; it goes on the wire as that text.
- The check `scope_violation`, active in the `narrowed` run only (GANTRY_CHECK_API_TARGET).
  The narrowed token holds its scopes for one service in one environment
  (GANTRY_CHECK_API_SERVICE, GANTRY_CHECK_API_ENVIRONMENT); the server also holds another
  service and other environments, made by the script. A 2xx answer to that token fails the
  check when
    * its JSON body names another service or environment (a `service`, `environment` or
      `env` field), or names the other service (GANTRY_CHECK_API_OTHER_SERVICE) anywhere,
    * it is a write (POST, PUT, PATCH, DELETE) whose request names another service or
      environment (path parameters, query, or the body's `service`/`environment`/`env`),
    * the operation needs `admin` (which a narrowed token never holds).
  scripts/check-api counts its failures as `scope_violations`.
"""

import json
import os

import schemathesis

TARGET = os.environ.get("GANTRY_CHECK_API_TARGET", "")
SERVICE = os.environ.get("GANTRY_CHECK_API_SERVICE", "shop")
ENVIRONMENT = os.environ.get("GANTRY_CHECK_API_ENVIRONMENT", "stage")
OTHER_SERVICE = os.environ.get("GANTRY_CHECK_API_OTHER_SERVICE", "cart")
TOKEN = os.environ.get("GANTRY_CHECK_API_TOKEN", "")

# Operations that need `admin` (docs/api.md): a 2xx to a narrowed token is a violation.
ADMIN_ONLY = {
    "POST /api/v1/services",
    "DELETE /api/v1/services/{name}",
    "PUT /api/v1/services/{name}/deploy-config",
    "POST /api/v1/tokens",
    "GET /api/v1/tokens",
    "DELETE /api/v1/tokens/{name}",
    "POST /api/v1/hosts",
    "DELETE /api/v1/hosts/{name}",
    "DELETE /api/v1/metrics",
    "POST /api/v1/metrics/compact",
    "PUT /api/v1/monitors/files/{source}",
    "POST /api/v1/monitors/{name}/rotate-key",
}

# Fields naming a service, or an environment.
SERVICE_FIELDS = {"service"}
ENVIRONMENT_FIELDS = {"environment", "env"}
# Path parameters naming a service, or an environment, by operation path.
SERVICE_PATHS = ("/api/v1/services/{name}",)

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@schemathesis.serializer("application/toml")
def toml_text(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def _outside(where, found):
    raise AssertionError(f"{where}: {found} is outside the token's {SERVICE}@{ENVIRONMENT}")


def _walk(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if key in SERVICE_FIELDS and item != SERVICE:
                    _outside(f"{where}.{key}", f"service {item!r}")
                if key in ENVIRONMENT_FIELDS and item != ENVIRONMENT:
                    _outside(f"{where}.{key}", f"environment {item!r}")
            _walk(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]")
    elif isinstance(value, str) and value == OTHER_SERVICE:
        _outside(where, f"service {value!r}")


def _sent_with_narrowed_token(response):
    sent = response.request.headers.get("Authorization", "")
    return TOKEN != "" and sent in (TOKEN, f"Bearer {TOKEN}")


@schemathesis.check
def scope_violation(ctx, response, case):
    """A narrowed token reached data or a write outside its service and environment."""
    if TARGET != "narrowed" or not 200 <= response.status_code < 300:
        return None
    if not _sent_with_narrowed_token(response):
        return None
    method = case.method.upper()
    label = f"{method} {case.path}"
    if label in ADMIN_ONLY:
        raise AssertionError(f"{label} needs admin, and answered {response.status_code} to a narrowed token")
    if method in WRITES:
        named = dict(case.path_parameters or {})
        if isinstance(case.query, dict):
            named.update({k: v for k, v in case.query.items() if isinstance(v, str)})
        if isinstance(case.body, dict):
            named.update({k: v for k, v in case.body.items() if isinstance(v, str)})
        for key, value in named.items():
            names_service = key in SERVICE_FIELDS or (key == "name" and case.path in SERVICE_PATHS)
            if names_service and value != SERVICE:
                _outside(f"{label} request {key}", f"service {value!r}")
            if key in ENVIRONMENT_FIELDS and value != ENVIRONMENT:
                _outside(f"{label} request {key}", f"environment {value!r}")
    content_type = " ".join(response.headers.get("content-type", []))
    if "json" not in content_type:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    _walk(body, "body")
    return None
