"""Talking to the DataWorks OpenAPI: signing, credentials, endpoints, transport, client."""
