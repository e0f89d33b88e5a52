"""Second factors: authenticator apps (TOTP), passkeys (WebAuthn), recovery codes, the login
challenge that asks for one, and the organisation policy that requires one."""
