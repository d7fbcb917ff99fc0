"""The shares and distributions of synthetic episodes, each from a published figure where one
exists (docs/analytics.md cites them) and a stated assumption where none does.

- Time to found: NCA missing persons data reports: over 75% of child episodes resolve within
  24 hours, about 2% last over a week. A log-normal with median 8 h and sigma 1.48 gives 77%
  under 24 h and 2% over 168 h.
- Repeats: 65% of child missing incidents are repeats, a few children account for a large share
  (Police Journal 2021); London 2022/23: 29,455 child incidents for 9,370 children (3.1 each).
- Looked-after share: DfE "Children looked after in England including adoptions" statistics
  count tens of thousands of missing incidents a year from care, against about 200,000 child
  incidents in the NCA report (England and Wales 2019/20: 198,943): 40% of episodes is an
  order of magnitude, for a force to replace with its own share.
- Risk mix, meeting rates, acknowledgement speeds, disclosures: no national figure; stated here
  as assumptions so a reader can change them.
"""

from __future__ import annotations

import math
import random

from mispers.domain.types import ObligationKind

K = ObligationKind

FOUND_MEDIAN_HOURS = 8.0
FOUND_SIGMA = 1.48
LOOKED_AFTER_SHARE = 0.40
SINGLE_EPISODE_SHARE = 0.5  # half the children go missing once in the year
REPEAT_EXTRA_MEAN = 4.2  # the others: 1 + geometric with this mean (3.1 episodes per child)
MAX_EPISODES_PER_CHILD = 60
REPEAT_GAP_DAYS = 20.0

RISK_LEVELS = ("high", "medium", "low", "very_low")
RISK_WEIGHTS = (0.08, 0.62, 0.20, 0.10)  # assumption: mostly medium (Met grades children medium+)
AGES = (10, 11, 12, 13, 14, 15, 16, 17)
AGE_WEIGHTS = (0.02, 0.03, 0.07, 0.13, 0.20, 0.25, 0.20, 0.10)

GRADED_UP_AT_REVIEW = 0.06
CSE_AT_REPORT_SHARE = 0.03
SIGHTING_SHARE = 0.15
LINKED_PERSON_SHARE = 0.08
CONCERN_LOCATION_SHARE = 0.03
SAME_PLACE_SHARE = 0.30
DISCLOSURE_SHARE = 0.05
DISCLOSURE_KINDS = (
    ("sexual_activity", 0.4),
    ("exploitation", 0.3),
    ("physical_harm", 0.2),
    ("other", 0.1),
)
RETURN_INTERVIEW_OUTCOMES = (("held", 0.6), ("declined", 0.3), ("not_held", 0.1))
ACK_SHARE = 0.75  # of the first two alerts of an obligation
ACK_MEDIAN_MINUTES = 12.0
ACK_SHARE_REPEATS = 0.05  # the top rank, re-alerted each interval, acknowledges few
WAIVER_REASONS = (
    "child returned before it was needed",
    "duplicate of another agency's action",
    "provider did not respond; escalated outside the system",
    "child moved out of area",
)

# A late step's lateness: log-normal, median this share of its window (plus 10 minutes).
LATE_SHARE_OF_WINDOW = 0.25
# (on time, late) by kind; the rest are never met (waived at closure or left overdue).
MEETING: dict[ObligationKind, tuple[float, float]] = {
    K.SYSTEMS_CHECKS: (0.90, 0.09),
    K.SUPERVISOR_REVIEW: (0.85, 0.13),
    K.SOCIAL_SERVICES_NOTIFIED_MISSING: (0.80, 0.15),
    K.RISK_REVIEW: (0.80, 0.15),
    K.PNC_CIRCULATED: (0.90, 0.05),
    K.STRATEGY_MEETING: (0.70, 0.20),
    K.SAFE_AND_WELL_CHECK: (0.85, 0.13),
    K.SOCIAL_SERVICES_NOTIFIED_RETURN: (0.75, 0.18),
    K.RETURN_INTERVIEW: (0.60, 0.25),
    K.CRIME_RECORDING: (0.80, 0.15),
    K.LINKED_PERSON_RESOLUTION: (0.70, 0.20),
    K.EXPLOITATION_SCREENING: (0.70, 0.20),
}


def hours_to_found(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(FOUND_MEDIAN_HOURS), FOUND_SIGMA)


def episodes_per_child(rng: random.Random) -> int:
    if rng.random() < SINGLE_EPISODE_SHARE:
        return 1
    p = 1 / (1 + REPEAT_EXTRA_MEAN)
    extra = int(math.log(1 - rng.random()) / math.log(1 - p)) + 1
    return min(1 + extra, MAX_EPISODES_PER_CHILD)
