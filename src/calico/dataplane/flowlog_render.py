"""Flow-log rules: the NFLOG statements at verdict points, and the registry that maps their
prefixes back (pure; the managers' helper).

A verdict point gets a *log twin*: a rule with the same matches as the rule that decides, placed
just before it, whose only statements are the shared rate limit and the log::

    <matches> limit name "cali-flowlog" log group 1 prefix "DI:3fa2c1d0e9b7"   (twin: no verdict)
    <matches> counter drop                                                      (the real rule)

The twin has no verdict, so whether the limit lets it log or not, the packet goes on to the rule
after it exactly as without the twin: logging cannot change a verdict. The limit is one nft
``limit`` object for the whole table, so however many rules a flood meets, the agent receives at
most ``rate`` messages a second (plus the burst). Allowed flows are logged only at a connection's
first packet (``ct state new``) and only when configured.

The staged walk (``endpoint_render``) uses the same twins, with staged points, in its shadow
chains, and leaves its verdict in two mark bits (``nft_render.MARK_STAGED_ALLOW`` /
``MARK_STAGED_DENY``) that every later log of the same packet carries to the agent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from calico.dataplane import nft_render as r
from calico.dpapi import flows

LIMIT = "cali-flowlog"


@dataclass(frozen=True, slots=True)
class FlowLogConfig:
    """What the dataplane logs (the agent's FlowLogs* parameters)."""

    enabled: bool = False  # flowLogsFileEnabled
    denied: bool = True  # flowLogsFileEnabledForDenied
    allowed: bool = False  # flowLogsFileEnabledForAllowed
    group: int = 1  # the NFLOG group the agent reads
    rate: int = 1000  # log messages per second, all verdict points together
    burst: int = 1000

    @property
    def log_denied(self) -> bool:
        return self.enabled and self.denied

    @property
    def log_allowed(self) -> bool:
        return self.enabled and self.allowed

    @property
    def staged(self) -> bool:
        """Staged policies are walked only when there is a log to carry their verdict."""
        return self.enabled

    def limit_decl(self) -> str:
        return f"rate {self.rate}/second burst {self.burst} packets"


OFF = FlowLogConfig()


def log_statement(point: flows.VerdictPoint, cfg: FlowLogConfig) -> str:
    return f'limit name "{LIMIT}" log group {cfg.group} prefix "{point.prefix()}"'


def twin(matches: str, point: flows.VerdictPoint, cfg: FlowLogConfig) -> str:
    """The log twin of a rule whose matches are ``matches`` (may be empty)."""
    return r.with_comment(" ".join(p for p in (matches, log_statement(point, cfg)) if p))


def rule_point(
    action: str, *, inbound: bool, staged: bool, policy: str | None = None,
    profile: str | None = None, index: int
) -> flows.VerdictPoint:  # fmt: skip
    return flows.VerdictPoint(
        action=flows.ALLOW if action == "allow" else flows.DENY,
        direction=flows.INGRESS if inbound else flows.EGRESS,
        by=flows.BY_RULE if policy is not None else flows.BY_PROFILE,
        staged=staged,
        policy=policy,
        profile=profile,
        rule=index,
    )


class Points:
    """Verdict points by prefix id, owned by the chains that log them (a chain's points go with
    the chain). ``lookup`` is how the agent names what a log message's prefix means."""

    def __init__(self) -> None:
        self._by_chain: dict[str, tuple[flows.VerdictPoint, ...]] = {}
        self._refs: Counter[str] = Counter()
        self._points: dict[str, flows.VerdictPoint] = {}

    def set(self, chain: str, points: tuple[flows.VerdictPoint, ...]) -> None:
        self.drop(chain)
        if not points:
            return
        self._by_chain[chain] = points
        for p in points:
            ident = p.ident()
            self._refs[ident] += 1
            self._points[ident] = p

    def drop(self, chain: str) -> None:
        for p in self._by_chain.pop(chain, ()):
            ident = p.ident()
            self._refs[ident] -= 1
            if self._refs[ident] <= 0:
                del self._refs[ident]
                del self._points[ident]

    def lookup(self, ident: str) -> flows.VerdictPoint | None:
        return self._points.get(ident)

    def __len__(self) -> int:
        return len(self._points)
