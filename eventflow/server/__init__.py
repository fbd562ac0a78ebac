"""The HTTP server of ``eventflow run --http``: health, metrics, a JSON API, webhooks, a page.

It runs in the same process and event loop as the runtime and reads the same store. The
modules that need starlette and uvicorn (the ``http`` extra) are imported only when the
server starts; :mod:`eventflow.server.hooks` imports neither. What the
API and the page show is built by :mod:`eventflow.views`, as for the CLI.
"""
