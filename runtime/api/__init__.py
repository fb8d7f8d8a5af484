"""The job API: ``app`` (routing and the work, transport-free), ``handler`` (Lambda, API Gateway HTTP API
payload v2), ``authorizer`` (Lambda REQUEST authorizer for api-key mode), ``local_server`` (the same
handler behind a small threaded HTTP server), ``auth`` (API keys, rate limits), ``openapi`` (the document).
"""
