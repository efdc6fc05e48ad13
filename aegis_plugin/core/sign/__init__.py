"""Signatures and attestations the way cosign stores them, so stock cosign verifies them: `keys` (loading
signing keys: PEM and cosign's encrypted format), `dsse` (in-toto statements in DSSE envelopes) and
`cosign` (the simple-signing payload, and the `.sig` / `.att` images attached by tag to a digest)."""
