"""The gateway's OpenAPI schema as a file: `python -m textlstm.gateway.schema > openapi.json`.

The schema a gateway serves at `/openapi.json` carries the limits it was started with
(`maxItems`, `maxLength`, the batch size), so it depends on the settings. The copy published
in the docs (docs/reference/openapi.json) is the one for the default settings, built here from
the defaults alone, whatever the environment says, so that regenerating it anywhere gives the
same bytes; tests/gateway/test_openapi_doc.py fails when the committed copy is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from textlstm.settings import Settings


def default_settings() -> Settings:
    """Every setting at its default, ignoring the environment and any `.env` file:
    `model_construct` fills the declared defaults without reading either."""
    return Settings.model_construct()


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The schema the gateway serves at `/openapi.json` with `settings` (default: the
    defaults). Builds the app without serving it: nothing is connected to."""
    from textlstm.gateway.app import create_app

    app = create_app(settings or default_settings())
    try:
        return app.openapi()
    finally:
        app.state.gateway.engine.dispose()


def render(document: dict[str, Any]) -> str:
    """The schema as the committed file holds it: indented, keys in the app's order, UTF-8."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Print the default-settings schema on stdout."""
    sys.stdout.write(render(openapi_document()))


if __name__ == "__main__":
    main()
