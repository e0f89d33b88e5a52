"""The playback-token service: Ed25519 signing keys, issue, verify, revoke, JWKS."""
