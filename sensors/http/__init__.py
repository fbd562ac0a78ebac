"""Webhooks: the ``http`` sensor (``sensor``) takes events pushed to the server of
``eventflow run --http``. Needs the ``http`` extra (starlette, uvicorn) to serve them.
"""
