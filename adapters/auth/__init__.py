"""Authentication adapters: password hashing (pwdlib/Argon2id) and access tokens (joserfc)."""
