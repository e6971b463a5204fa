"""Signed URL tokens: what they carry, and every way a token that was not issued as-is is refused."""

import base64
import json

import pytest
from pydantic import SecretStr

from core import signing
from core.config import Settings
from core.errors import Forbidden
from core.signing import Purpose, UrlSigner, derive_key, sign, verify

KEY = derive_key("k" * 48)
NOW = 1_800_000_000


def token(claims=None, purpose="upload", expires_at=NOW + 60, key=KEY):
    return sign(key, purpose, claims or {"k": "uploads/u/abc.wav", "n": 123}, expires_at)


def test_a_token_carries_its_claims_back():
    assert verify(KEY, "upload", token(), now=NOW) == {"k": "uploads/u/abc.wav", "n": 123}


def test_expiry_is_exclusive_of_the_last_second():
    t = token(expires_at=NOW + 60)
    assert verify(KEY, "upload", t, now=NOW + 59.999)["n"] == 123
    for later in (NOW + 60, NOW + 3600):
        with pytest.raises(Forbidden, match="expired"):
            verify(KEY, "upload", t, now=later)


def test_the_purpose_is_signed():
    with pytest.raises(Forbidden, match="signature"):
        verify(KEY, "download", token(purpose="upload"), now=NOW)


def test_another_key_is_refused():
    with pytest.raises(Forbidden, match="signature"):
        verify(derive_key("x" * 48), "upload", token(), now=NOW)


def _tampered_payload(original: str, **changes: object) -> str:
    payload, mac = original.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=").decode()
    return f"{forged}.{mac}"


@pytest.mark.parametrize(
    "changes", [{"n": 10**12}, {"k": "uploads/other/abc.wav"}, {"exp": NOW + 10**6}], ids=str
)
def test_a_changed_payload_is_refused(changes):
    with pytest.raises(Forbidden, match="signature"):
        verify(KEY, "upload", _tampered_payload(token(), **changes), now=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "abc",
        "abc.",
        ".abc",
        "a.b.c",
        "not base64!.AAAA",
        "x" * 5000,
    ],
)
def test_malformed_tokens_are_refused(bad):
    with pytest.raises(Forbidden):
        verify(KEY, "upload", bad, now=NOW)


def test_a_changed_or_padded_mac_is_refused():
    payload, mac = token().split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for bad_mac in (flipped, mac + "=", mac + "A", mac[:-1], mac.upper()):
        with pytest.raises(Forbidden):
            verify(KEY, "upload", f"{payload}.{bad_mac}", now=NOW)


def test_exp_cannot_be_given_as_a_claim():
    with pytest.raises(ValueError, match="exp"):
        sign(KEY, "upload", {"exp": 1}, NOW)


def test_the_signing_key_is_not_the_jwt_secret():
    secret = "s" * 48
    assert derive_key(secret) != secret.encode()
    assert len(derive_key(secret)) == 32


def test_url_signer_uses_the_service_secret_and_the_clock(tmp_path, monkeypatch):
    settings = Settings(environment="test", data_dir=tmp_path, database_url="sqlite://", jwt_secret="j" * 40)
    monkeypatch.setattr(signing, "clock", lambda: NOW)
    t, expires_at = UrlSigner(settings).sign(Purpose.DOWNLOAD, {"k": "jobs/1/transcript.txt"}, 300)
    assert expires_at.timestamp() == NOW + 300
    # Another process with the same secret accepts it...
    assert UrlSigner(settings).verify(Purpose.DOWNLOAD, t) == {"k": "jobs/1/transcript.txt"}
    # ...for another purpose, or with another secret, or after its lifetime, it refuses it.
    with pytest.raises(Forbidden):
        UrlSigner(settings).verify(Purpose.UPLOAD, t)
    other = settings.model_copy(update={"jwt_secret": SecretStr("o" * 40)})
    with pytest.raises(Forbidden):
        UrlSigner(other).verify(Purpose.DOWNLOAD, t)
    monkeypatch.setattr(signing, "clock", lambda: NOW + 300)
    with pytest.raises(Forbidden, match="expired"):
        UrlSigner(settings).verify(Purpose.DOWNLOAD, t)
