"""The custom search attributes of the contract (docs/contract.md, "Temporal surface"): no
personal data, kept current by the workflow."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

EPISODE_STATUS = SearchAttributeKey.for_keyword("EpisodeStatus")
RISK_LEVEL = SearchAttributeKey.for_keyword("RiskLevel")
CHILD_REF = SearchAttributeKey.for_keyword("ChildRef")
OVERDUE_COUNT = SearchAttributeKey.for_int("OverdueCount")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadline")
LOOKED_AFTER = SearchAttributeKey.for_bool("LookedAfter")
EPISODE_FLAGS = SearchAttributeKey.for_keyword_list("EpisodeFlags")
# States of the episode's alerts, and `state:rank` of the unresolved ones (e.g.
# "triggered:inspector"): the alert listing's filter. No person ids.
ALERT_STATES = SearchAttributeKey.for_keyword_list("AlertStates")

ALL = (
    EPISODE_STATUS,
    RISK_LEVEL,
    CHILD_REF,
    OVERDUE_COUNT,
    NEXT_DEADLINE,
    LOOKED_AFTER,
    EPISODE_FLAGS,
    ALERT_STATES,
)

# `temporal server start-dev --search-attribute NAME=TYPE` spelling of each.
CLI_TYPES = {
    EPISODE_STATUS.name: "Keyword",
    RISK_LEVEL.name: "Keyword",
    CHILD_REF.name: "Keyword",
    OVERDUE_COUNT.name: "Int",
    NEXT_DEADLINE.name: "Datetime",
    LOOKED_AFTER.name: "Bool",
    EPISODE_FLAGS.name: "KeywordList",
    ALERT_STATES.name: "KeywordList",
}
