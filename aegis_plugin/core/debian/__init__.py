"""A minimal Debian runtime base, built from a committed package lock without dpkg or apt.

Lock time (``build-support/lock_debian.py``): ``spec`` lists the packages, ``sources`` finds the
machine's mirror, ``index`` reads the archive's Packages files, picks versions and checks that the
set is closed under Depends, and ``lock`` writes the result (host-free, sha256-pinned).

Build time: ``fetch`` downloads the locked .debs, ``deb`` reads them, and ``rootfs`` turns them into
the entries of one image layer.
"""
