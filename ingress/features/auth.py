"""Auth: basic or digest authentication from a Secret (auth-type, auth-secret,
auth-secret-type, auth-realm): basic with nginx's auth_basic, digest in Lua
(templates/lua/portolan_digest.lua: Debian's nginx has no digest module).

The Secret layouts are ingress-nginx's: ``auth-file`` (the default) holds an htpasswd file under
the key ``auth``; ``auth-map`` holds one key per user, its value the password hash. The
controller writes the file under --config-dir/auth (ingress/features/files.py), readable by
nginx's workers only. A missing Secret, a Secret of another namespace or one without its key
denies the location with a 503, as ingress-nginx does; lines of the file that are not
``user:hash`` are dropped (such users get a 401, as with ingress-nginx's broken file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from ingress.features import LOCATION, Context, Feature, SideFile, same_namespace
from ingress.validate import InvalidValue, namespace, secret_name
from kubewatch import Secret

# A realm is rendered quoted; still no "$" (variables), quotes or backslash. "off" would turn
# auth_basic off, so it is refused.
_REALM_RE = re.compile(r"^[A-Za-z0-9 ._~:/@,()!?+=&*-]{0,128}$")
# htpasswd lines: a user without ":" or blanks, and a hash of printable characters.
_USER_RE = re.compile(r"^[A-Za-z0-9._@+=-]{1,128}$")
_HASH_RE = re.compile(r"^[\x21-\x7e]{1,512}$")
MAX_USERS = 10000


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """auth-type basic or digest: the Secret to read and the realm; resolved: the file, or a denial."""

    group: ClassVar[str] = "auth"
    secret: str  # "" when auth-secret is missing (the location is denied)
    secret_namespace: str | None = None  # from "ns/name"
    secret_type: str = "auth-file"
    realm: str = ""
    kind: str = "basic"  # or "digest" (an htdigest file: user:realm:HA1, checked in Lua)
    file: SideFile | None = None  # resolved: the htpasswd file
    denied: str = ""  # resolved: why the location answers 503 ("" when it does not)

    @property
    def files(self) -> tuple[SideFile, ...]:
        return (self.file,) if self.file is not None else ()


def _secret_ref(text: str) -> tuple[str | None, str]:
    """auth-secret: NAME or NAMESPACE/NAME."""
    ns, sep, name = text.rpartition("/")
    return (namespace(ns, "secret namespace") if sep else None), secret_name(name, "secret name")


def _realm(text: str) -> str:
    if not _REALM_RE.fullmatch(text) or text == "off":
        raise ValueError("not a realm of letters, digits, spaces and ._~:/@,()!?+=&*- (and not 'off')")
    return text


def parse(raw: Mapping[str, str], notes: list[str]) -> BasicAuth | None:
    kind = raw.get("auth-type")
    if kind is None:
        for key in sorted(raw):
            notes.append(f"annotation {key} ignored: no auth-type")
        return None
    if kind not in ("basic", "digest"):
        raise InvalidValue(f"annotation auth-type: {kind[:40]!r} is not basic or digest")
    values: dict[str, object] = {"kind": kind}
    try:
        if "auth-secret" in raw:
            values["secret_namespace"], values["secret"] = _secret_ref(raw["auth-secret"])
        if "auth-secret-type" in raw:
            if raw["auth-secret-type"] not in ("auth-file", "auth-map"):
                raise ValueError("not auth-file or auth-map")
            values["secret_type"] = raw["auth-secret-type"]
        if "auth-realm" in raw:
            values["realm"] = _realm(raw["auth-realm"])
    except ValueError as exc:
        raise InvalidValue(f"annotation auth-*: {exc}") from None
    if kind == "digest" and values.get("secret_type") == "auth-map":
        raise InvalidValue("annotation auth-secret-type: auth-map is not supported with auth-type digest "
                           "(use auth-file, an htdigest file)")  # fmt: skip
    return BasicAuth(**{"secret": "", **values})  # type: ignore[arg-type]


def _htpasswd(lines: list[tuple[str, str]]) -> bytes:
    return "".join(f"{user}:{hashed}\n" for user, hashed in lines).encode()


_HA1_RE = re.compile(r"^[0-9a-fA-F]{32}$")


def _valid_line(user: str, hashed: str, digest: bool) -> bool:
    """user:hash (htpasswd), or user:realm:HA1 (htdigest: ``hashed`` is realm:HA1)."""
    if not _USER_RE.fullmatch(user):
        return False
    if digest:
        realm, sep, ha1 = hashed.rpartition(":")
        return bool(sep) and _REALM_RE.fullmatch(realm) is not None and _HA1_RE.fullmatch(ha1) is not None
    return _HASH_RE.fullmatch(hashed) is not None


def _from_file(data: bytes, notes: list[str], where: str, digest: bool) -> bytes:
    out: list[tuple[str, str]] = []
    text = data.decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not _valid_line(user, hashed, digest):
            notes.append(f"{where}: line {number} is not {'user:realm:HA1' if digest else 'user:hash'}; dropped")
            continue
        out.append((user, hashed))
    return _htpasswd(out[:MAX_USERS])


def _from_map(data: Mapping[str, bytes], notes: list[str], where: str) -> bytes:
    out: list[tuple[str, str]] = []
    for user in sorted(data):
        hashed = data[user].decode("utf-8", errors="replace").strip()
        if user in ("tls.crt", "tls.key", "ca.crt", "ca.crl", "auth"):
            continue
        if not _valid_line(user, hashed, False):
            notes.append(f"{where}: key {user[:40]!r} is not a user with a password hash; dropped")
            continue
        out.append((user, hashed))
    return _htpasswd(out[:MAX_USERS])


def resolve(value: BasicAuth | None, ctx: Context) -> BasicAuth | None:
    if value is None:
        return None
    where = f"{ctx.ingress}: auth-secret"
    key = "auth" if value.secret_type == "auth-file" else ""
    secret, denied = (same_namespace("Secret", value.secret_namespace, value.secret, ctx, key) if value.secret
                      else (None, "auth-type basic without auth-secret"))  # fmt: skip
    if not isinstance(secret, Secret):
        ctx.notes.append(f"{where}: {denied}: 503")
        return replace(value, denied=denied)
    if value.secret_type == "auth-file":
        content = _from_file(secret.data["auth"], ctx.notes, where, value.kind == "digest")
    else:
        content = _from_map(secret.data, ctx.notes, where)
    return replace(value, file=SideFile.of("htdigest" if value.kind == "digest" else "htpasswd", content,
                                           worker=True))  # fmt: skip


FEATURE = Feature(
    group="auth",
    annotations=("auth-type", "auth-secret", "auth-secret-type", "auth-realm"),
    scope=LOCATION,
    risk="Low",
    differs="digest is done in Lua (Debian's nginx has no digest module): MD5, qop auth, stateless nonces valid "
    "5 minutes and not counted (a captured request can be replayed within them), auth-file only; auth-map "
    "keeps only keys whose value looks like a password hash ($apr1$, $2y$, $5$, $6$, {SHA}...)",
    parse=parse,
    resolve=resolve,
)
