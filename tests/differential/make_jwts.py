"""Makes the differential suite's JWTs with jwcrypto (the reference's own JOSE library): run
with the reference's Python. Usage: make_jwts.py DIR HOST PORT; writes DIR/rsa.pem,
DIR/oct.key and DIR/tokens.json ({name: token})."""

import json
import sys
import time

from jwcrypto import jwk, jwt

out, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
rsa = jwk.JWK.generate(kty="RSA", size=2048)
with open(f"{out}/rsa.pem", "wb") as f:
    f.write(rsa.export_to_pem(private_key=True, password=None))
oct_key = jwk.JWK.generate(kty="oct", size=256)
with open(f"{out}/oct.key", "w") as f:
    f.write(oct_key["k"])  # the reference reads a non-PEM file as the key's base64url text

claims = {"host": host, "port": port}


def signed(key, alg, claims):
    t = jwt.JWT(header={"alg": alg}, claims=claims)
    t.make_signed_token(key)
    return t.serialize()


def encrypted(key, alg, enc, payload, cty=None):
    header = {"alg": alg, "enc": enc}
    if cty:
        header["cty"] = cty
    t = jwt.JWT(header=header, claims=payload)
    t.make_encrypted_token(key)
    return t.serialize()


now = int(time.time())
tokens = {
    "HS256 with a symmetric key file": ("oct", signed(oct_key, "HS256", claims)),
    "RS256 with a PEM key file": ("rsa", signed(rsa, "RS256", claims)),
    "RS512, port as a string": ("rsa", signed(rsa, "RS512", {"host": host, "port": str(port)})),
    "expired (`exp` a minute ago)": ("rsa", signed(rsa, "RS256", dict(claims, exp=now - 60))),
    "not yet valid (`nbf` in an hour)": ("rsa", signed(rsa, "RS256", dict(claims, nbf=now + 3600))),
    "signed with another key": ("rsa", signed(jwk.JWK.generate(kty="RSA", size=2048), "RS256", claims)),
    "JWE (RSA-OAEP, A256GCM) of the claims": ("rsa", encrypted(rsa, "RSA-OAEP", "A256GCM", claims)),
    "a JWS nested in a JWE": (
        "rsa",
        encrypted(rsa, "RSA-OAEP", "A256GCM", signed(rsa, "RS256", claims), cty="JWT"),
    ),
}
with open(f"{out}/tokens.json", "w") as f:
    json.dump(tokens, f)
