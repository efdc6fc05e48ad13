"""An OCI distribution (registry) client, stdlib only, split as go-containerregistry splits its own:
`reference` (names), `auth` (where credentials come from), `transport` (HTTP with the registry's auth
challenges), `client` (blobs, manifests, tags) and `push` (an image from an OCI layout, by digest)."""
