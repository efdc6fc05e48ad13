"""The `aegis` command for the deployment side: check and promote published model images.

    aegis verify REGISTRY/REPO@sha256:... --key cosign.pub [--identity SIGNER]
    aegis verify REGISTRY/REPO@sha256:... --identity SIGNER --issuer OIDC_ISSUER [--trusted-root FILE]
    aegis promote SRC_REGISTRY/REPO@sha256:... DST_REGISTRY/REPO:VERSION (--key ... | --identity ... --issuer ...)

Both run offline against the registries alone: a keyless signature is checked against a Sigstore trusted
root (default: the production one shipped with sigstore-python), its transparency-log entry by the log's
signed entry timestamp. `promote` verifies first and copies the image, its signature and attestations by
digest, then tags it, refusing to move an existing tag. A model's ModelPack artifact is verified and promoted
the same way, by its own digest (`... REPO:VERSION_modelpack`). An image index (several platforms) is verified
with every platform's image it lists, and promoted with them. Runnable from the repository as
`./pants run aegis_plugin/core/publish:aegis -- ...`.
Exit status 0 when verified/promoted; 1 with the reason otherwise.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.publish.promote import promote
from aegis_plugin.core.publish.verify import (
    KeylessPolicy,
    KeyPolicy,
    Policy,
    VerificationError,
    Verified,
    load_public_key,
    verify,
)
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import ReferenceError, parse
from aegis_plugin.core.sign.identity import TrustedRoot


def policy(args: argparse.Namespace) -> Policy:
    if args.key:
        if args.issuer or args.trusted_root:
            raise VerificationError("--issuer and --trusted-root are for keyless verification, not with --key")
        with open(args.key, "rb") as f:
            return KeyPolicy(load_public_key(f.read(), args.key), args.identity)
    if not (args.identity and args.issuer):
        raise VerificationError("give --key, or --identity and --issuer for a keyless signature")
    if args.trusted_root:
        with open(args.trusted_root, "rb") as f:
            trust = TrustedRoot.from_json(f.read(), args.trusted_root)
    else:
        trust = TrustedRoot.sigstore_production()
    return KeylessPolicy(trust, args.identity, args.issuer)


def _checked(verified: Verified) -> str:
    what = "image index" if verified.is_index else "image, model signature"
    return (f"signed by {verified.signed_by or '(no identity)'}; attestations: "
            f"{', '.join(sorted(verified.attestations))} ({what})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="aegis", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="verify an image's signature and attestations")
    check.add_argument("image", help="REGISTRY/REPOSITORY@sha256:...")
    move = commands.add_parser("promote", help="verify, then copy an image by digest and tag it")
    move.add_argument("source", help="REGISTRY/REPOSITORY@sha256:...")
    move.add_argument("target", help="REGISTRY/REPOSITORY:VERSION")
    for command in (check, move):
        command.add_argument("--key", help="the signer's public key (PEM), e.g. cosign.pub")
        command.add_argument("--identity", help="require this signer identity (the image manifest's signed_by; "
                                                "keyless: the certificate's e-mail or URI)")
        command.add_argument("--issuer", help="keyless: the OIDC issuer that must vouch for the identity, e.g. "
                                              "https://token.actions.githubusercontent.com")
        command.add_argument("--trusted-root", help="keyless: a Sigstore trusted_root.json (default: Sigstore's "
                                                    "production root shipped with sigstore-python)")
        command.add_argument("--allow-plain-http", action="store_true",
                             help="plain HTTP to registries not on loopback")
    args = parser.parse_args(argv)
    try:
        trusted = policy(args)
        if args.command == "verify":
            ref = parse(args.image)
            verified = verify(Registry.for_reference(ref, args.allow_plain_http), ref, trusted)
            print(f"verified {ref}: {_checked(verified)}")
            for platform, image in verified.platforms:
                print(f"verified its {platform} image {ref.with_digest(image.digest)}: {_checked(image)}")
        else:
            source, target = parse(args.source), parse(args.target)
            if not target.tag or target.digest:
                raise ReferenceError(f"{args.target}: the target must be REGISTRY/REPOSITORY:VERSION")
            for line in promote(Registry.for_reference(source, args.allow_plain_http), source,
                                Registry.for_reference(target, args.allow_plain_http), target, trusted):
                print(line)
    except OSError as e:
        print(f"aegis: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except AegisError as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
