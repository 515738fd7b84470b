"""`textlstm-admin serve-api`: run the HTTP gateway (textlstm/gateway/) under uvicorn (the
api extra; its tokens come from `textlstm-admin api-token`, textlstm/cli/api_token.py)."""

from __future__ import annotations

import click


@click.command("serve-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="uvicorn worker processes (each serves requests on its own event loop).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def serve_api(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the HTTP API: submit jobs, follow them, read results, list models.

    Needs TEXTLSTM_BROKER_URL and TEXTLSTM_DATABASE_URL, and TEXTLSTM_API_TOKENS or
    TEXTLSTM_API_TOKENS_FILE for any /v1 request to be admitted (docs/gateway.md). No model
    is loaded: the gateway needs neither torch nor a GPU.
    """
    import uvicorn

    from textlstm.settings import get_settings

    # A settings mistake (a bad line in TEXTLSTM_API_TOKENS_FILE included) is one line here,
    # not one per worker.
    settings = get_settings()
    if not settings.api_token_entries:
        click.echo(
            "warning: no API tokens (TEXTLSTM_API_TOKENS and TEXTLSTM_API_TOKENS_FILE are "
            "empty): every /v1 request will be refused (401); make a token with "
            "`textlstm-admin api-token`",
            err=True,
        )
    uvicorn.run(
        "textlstm.gateway.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
    )
