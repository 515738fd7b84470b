"""`textlstm-admin api-token`: make a gateway token and the TEXTLSTM_API_TOKENS entry that
admits it. On the base install (hashlib and secrets only): tokens are made where the settings
are kept, which need not be where the gateway runs."""

from __future__ import annotations

import click


@click.command("api-token")
@click.option(
    "--scope",
    type=click.Choice(["read", "submit"]),
    default="submit",
    show_default=True,
    help="read: status, results, models; submit: also submit and cancel.",
)
def api_token(scope: str) -> None:
    """Print a new random gateway token, then its TEXTLSTM_API_TOKENS entry (the token's
    sha256 and scope: only that is stored). Give the token to the client; append the entry to
    TEXTLSTM_API_TOKENS (comma-separated) or as a line to TEXTLSTM_API_TOKENS_FILE (a Docker
    secret), and restart the gateway."""
    from textlstm.gateway.auth import hash_token, new_token

    token = new_token()
    click.echo(f"token  {token}")
    click.echo(f"entry  {hash_token(token)}:{scope}")
