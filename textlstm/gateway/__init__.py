"""The HTTP gateway (`textlstm-admin serve-api`, docs/gateway.md): producers in any language
submit, follow and read jobs over HTTP.

`auth` and `requests` are pure and import no FastAPI (the settings validate tokens with
`auth` on the base install); `app` and `metrics` need the `api` extra. Importing this package
imports neither.
"""
