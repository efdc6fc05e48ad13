import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aegis_plugin.core.sign.keys import SigningKeyError, load_private_key, public_key_pem, sign


def _pem(key, password: bytes = b"", fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def test_plain_and_encrypted_pem() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for data, password in [(_pem(key), None), (_pem(key, fmt=serialization.PrivateFormat.TraditionalOpenSSL), None),
                           (_pem(key, b"pw"), b"pw")]:
        loaded = load_private_key(data, password, "k.pem")
        assert public_key_pem(loaded) == public_key_pem(key)


def test_signatures_are_deterministic_and_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert sign(key, b"payload") == sign(key, b"payload")
    key.public_key().verify(sign(key, b"payload"), b"payload", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    "data, password, message",
    [
        (b"not a key", None, "k.pem: not a PEM private key"),
        (None, None, "needs its password"),
        (None, b"wrong", "cannot load the key"),
    ],
)
def test_bad_keys(data, password, message: str) -> None:
    encrypted = _pem(ec.generate_private_key(ec.SECP256R1()), b"right")
    with pytest.raises(SigningKeyError, match=message):
        load_private_key(data or encrypted, password, "k.pem")


def test_only_p256() -> None:
    with pytest.raises(SigningKeyError, match="expected an ECDSA P-256 key"):
        load_private_key(_pem(rsa.generate_private_key(65537, 2048)), None, "k.pem")
    with pytest.raises(SigningKeyError, match="expected an ECDSA P-256 key"):
        load_private_key(_pem(ec.generate_private_key(ec.SECP384R1())), None, "k.pem")
