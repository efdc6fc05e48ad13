"""`pants publish` for model images: push by digest, sign and attest (cosign-compatible), then tag, immutably."""
