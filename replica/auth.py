"""Who may call which endpoint of the replica: ONE table, deny by default.

:data:`ROUTES` maps every route of the app, ``(METHOD, path template)``, to its
:class:`Rule`. The same table is in ``docs/replica-api.md`` (section "Access"), and a
test checks that the two agree and that every route the app serves is listed. A route
the app serves but this table does not list is refused with 403 ``unlisted-route``
(:mod:`replica.access`), so a new endpoint is closed until someone decides who may use it.

Rules:

- ``scope(S)``: an API token (``Authorization: Bearer mct_...``) with scope ``S``.
- ``public_if(G, S)``: anyone, when the config lists group ``G`` in ``auth.public``;
  else as ``scope(S)``.
- ``GATEWAY_SIGNATURE``: no token; the body must be blocks signed by the gateway key in
  the URL (the push checks the signatures; unknown and revoked keys are refused first).

Adding a route is one line here and one row in the doc's table. ``HEAD`` requests follow
the rule of ``GET``. A new kind of credential (e.g. a web session) is a new
``Rule.kind`` handled in :func:`decide` and :mod:`replica.access`, never a bypass.
"""

from __future__ import annotations

from dataclasses import dataclass

READ_CHAIN = "read:chain"
"""Heads, block hashes, blocks as stored, gateway list, fork evidence (mirror, audit)."""
READ_READINGS = "read:readings"
"""Anything that decodes readings: CSV export, inclusion proofs (decrypted when sealed)."""
READ_METRICS = "read:metrics"
"""The Prometheus exposition (operational figures per gateway, no readings)."""
SCOPES = (READ_CHAIN, READ_READINGS, READ_METRICS)
"""Scopes a token may carry. No administrative action is exposed over HTTP (enrollment
and tokens change only through ``meterchain replica ...`` on the database)."""

PUBLIC_GROUPS = ("health", "heads", "openapi", "metrics")
"""Groups of routes ``auth.public`` may open to anonymous clients."""
DEFAULT_PUBLIC = ("health", "heads")
"""Open unless configured otherwise: liveness, and heads (gateways read their head to
resume forwarding; auditors compare heads across replicas)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """How one route is authorised (see the module docstring)."""

    kind: str
    """``scope``, ``public-if-configured`` or ``gateway-signature``."""
    scope: str | None = None
    group: str | None = None

    def describe(self) -> str:
        """The rule as the doc's table writes it."""
        if self.kind == "scope":
            return f"`{self.scope}`"
        if self.kind == "public-if-configured":
            return f"public-if-configured `{self.group}`, else `{self.scope}`"
        return self.kind


def scope(name: str) -> Rule:
    """A token with scope ``name``."""
    assert name in SCOPES, name
    return Rule("scope", name)


def public_if(group: str, otherwise: str) -> Rule:
    """Public when ``group`` is in ``auth.public``, else a token with ``otherwise``."""
    assert group in PUBLIC_GROUPS and otherwise in SCOPES, (group, otherwise)
    return Rule("public-if-configured", otherwise, group)


GATEWAY_SIGNATURE = Rule("gateway-signature")
WEB_VIEW = Rule("web-view")
"""The web view's pages, login and static files (``replica/ui``): open to the browser;
the pages need a login session and hold no data (their scripts read ``/v1`` with the
session's token, under the rules of this table)."""

GW = "/v1/gateways/{gw}"
ST = "/v1/settlements/{doc}"

# fmt: off
ROUTES: dict[tuple[str, str], Rule] = {
    ("POST", f"{GW}/blocks"):                GATEWAY_SIGNATURE,
    ("GET",  f"{GW}/head"):                  public_if("heads", READ_CHAIN),
    ("GET",  f"{GW}/blocks/{{height}}/hash"): public_if("heads", READ_CHAIN),
    ("GET",  f"{GW}/blocks"):                scope(READ_CHAIN),
    ("GET",  "/v1/gateways"):                scope(READ_CHAIN),
    ("GET",  "/v1/forks"):                   scope(READ_CHAIN),
    ("GET",  f"{GW}/proof"):                 scope(READ_READINGS),
    ("GET",  f"{GW}/readings.csv"):          scope(READ_READINGS),
    ("GET",  "/v1/health"):                  public_if("health", READ_CHAIN),
    ("GET",  "/openapi.json"):               public_if("openapi", READ_CHAIN),
    ("GET",  "/metrics"):                    public_if("metrics", READ_METRICS),
    ("GET",  "/v1/meterdata/points"):        scope(READ_READINGS),
    ("GET",  "/v1/meterdata/intervals"):     scope(READ_READINGS),
    ("GET",  "/v1/meterdata/readings.csv"):  scope(READ_READINGS),
    ("GET",  "/v1/meterdata/gateways"):      scope(READ_READINGS),
    ("GET",  f"{GW}/facts"):                 scope(READ_CHAIN),
    ("GET",  f"{GW}/forks"):                 scope(READ_CHAIN),
    ("GET",  "/v1/peers/heads"):             scope(READ_CHAIN),
    ("GET",  "/ui"):                         WEB_VIEW,
    ("GET",  "/ui/login"):                   WEB_VIEW,
    ("POST", "/ui/login"):                   WEB_VIEW,
    ("POST", "/ui/logout"):                  WEB_VIEW,
    ("GET",  "/ui/overview"):                WEB_VIEW,
    ("GET",  "/ui/gateways/{key}"):          WEB_VIEW,
    ("GET",  "/ui/audit"):                   WEB_VIEW,
    ("GET",  "/ui/static"):                  WEB_VIEW,
    ("GET",  "/ui/community"):               WEB_VIEW,
    ("GET",  "/ui/community/{doc}/members/{member}"): WEB_VIEW,
    ("GET",  "/v1/settlements"):             scope(READ_CHAIN),
    ("GET",  f"{ST}/document"):              scope(READ_READINGS),
    ("GET",  f"{ST}/members"):               scope(READ_READINGS),
    ("GET",  f"{ST}/members/{{member}}/statement.json"): scope(READ_READINGS),
    ("GET",  f"{ST}/members/{{member}}/statement.csv"):  scope(READ_READINGS),
    ("GET",  f"{ST}/flows"):                 scope(READ_READINGS),
}
# fmt: on


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (``HEAD`` as ``GET``), or ``None``: refused, deny by default."""
    return ROUTES.get(("GET" if method == "HEAD" else method, path))


@dataclass(frozen=True, slots=True)
class Decision:
    """What the access check concluded: allowed, or refused with status/code/detail."""

    allowed: bool
    status: int = 200
    code: str = ""
    detail: str = ""


ALLOW = Decision(True)


def decide(rule: Rule | None, public: frozenset[str], token_scopes: tuple[str, ...] | None,
           token_given: bool) -> Decision:
    """Decide one request.

    ``token_scopes`` are the scopes of a valid presented token, ``None`` when no valid
    token was presented; ``token_given`` says whether a token was presented at all.
    Refusals name no secret: not the token, not whether a token id exists.
    """
    if rule is None:
        return Decision(False, 403, "unlisted-route",
                        "this endpoint is not open to any client (deny by default)")
    if rule.kind in ("gateway-signature", "web-view"):
        return ALLOW
    if rule.kind == "public-if-configured" and rule.group in public:
        return ALLOW
    if rule.kind not in ("scope", "public-if-configured") or rule.scope is None:
        return Decision(False, 403, "unlisted-route",
                        "this endpoint is not open to any client (deny by default)")
    if token_scopes is None:
        if token_given:
            return Decision(False, 401, "bad-token",
                            "the API token is not valid (malformed, unknown or revoked)")
        return Decision(False, 401, "token-required",
                        f"this endpoint needs an API token with scope {rule.scope} "
                        "(header 'Authorization: Bearer mct_...')")
    if rule.scope not in token_scopes:
        return Decision(False, 403, "insufficient-scope",
                        f"this endpoint needs scope {rule.scope}; the token lacks it")
    return ALLOW
